fn main() {
    std::process::exit(kart::run());
}
