//! Is a host port free, and if not, who holds it? Checked before anything is
//! created, so that a clash is reported with its fix instead of as a
//! half-started stack (workshop spec §6, the most common first-run failure).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

/// Whether `ip:port` can be bound now. `0.0.0.0` is checked as well when
/// publishing on loopback: a process on all interfaces blocks both.
pub fn is_free(ip: &str, port: u16) -> bool {
    let ip: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut addresses = vec![SocketAddr::new(ip, port)];
    if ip.is_loopback() {
        addresses.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    addresses.iter().all(|a| TcpListener::bind(a).is_ok())
}

/// A process listening on `port` (TCP, any address), from `/proc`: its pid
/// and command name. `None` where `/proc` is not readable (macOS, another
/// user's process).
pub fn process_holding(port: u16) -> Option<(u32, String)> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|table| listening_inode(table, port))?;
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).map(|l| l.to_string_lossy() == wanted).unwrap_or(false) {
                let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
                return Some((pid, name));
            }
        }
    }
    None
}

fn listening_inode(table: &str, port: u16) -> Option<String> {
    let text = std::fs::read_to_string(table).ok()?;
    parse_listening_inode(&text, port)
}

/// Finds the inode of a socket in LISTEN state (0A) on `port` in a
/// `/proc/net/tcp` table.
fn parse_listening_inode(text: &str, port: u16) -> Option<String> {
    let wanted = format!("{port:04X}");
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?;
        let state = fields.get(3)?;
        let inode = fields.get(9)?;
        (local.rsplit(':').next()? == wanted && *state == "0A").then(|| inode.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_port_is_not_free_and_its_holder_is_this_process() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!is_free("127.0.0.1", port));
        let (pid, _) = process_holding(port).expect("found in /proc");
        assert_eq!(pid, std::process::id());
        drop(listener);
        assert!(is_free("127.0.0.1", port));
    }

    #[test]
    fn proc_table_parsing() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0\n   1: 0100007F:1F91 00000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n";
        assert_eq!(parse_listening_inode(table, 8080).as_deref(), Some("12345"));
        assert_eq!(parse_listening_inode(table, 8081), None);
        assert_eq!(parse_listening_inode("garbage", 1), None);
    }
}
