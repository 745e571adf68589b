//! Java's `String.format("%.Nf", double)`, as the workshop's reason texts use
//! it ("Price increased by $%.2f (%.1f%%)", "No updates for %.1f hours").
//!
//! Java does not round the exact binary value of the double (C's `printf`
//! does, with ties to even on exact halves). It takes the *shortest* decimal
//! string that reads back as the same double — `1.005` for the double nearest
//! to 1.005, which is really 1.00499999999999989… — and rounds that string
//! HALF_UP. So Java prints 1.005 as "1.01" and 0.125 as "0.13", where C
//! prints "1.00" and "0.12". Rust's `Display` for `f64` produces exactly that
//! shortest string (and never switches to exponent notation), so rounding its
//! digits by hand reproduces Java.

use std::fmt::Write as _;

/// `String.format("%.2f", value)`.
pub fn java_fixed2(value: f64) -> String {
    java_fixed(value, 2)
}

/// `String.format("%.1f", value)`.
pub fn java_fixed1(value: f64) -> String {
    java_fixed(value, 1)
}

/// `String.format("%.<precision>f", value)` with Java's rounding.
///
/// Infinity and NaN are written as Java writes them ("Infinity", "NaN"),
/// although kart never formats them: a price change from 0 is worded
/// without a percentage.
pub fn java_fixed(value: f64, precision: usize) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let mut shortest = String::with_capacity(32);
    // Writing to a String cannot fail.
    let _ = write!(shortest, "{}", value.abs());
    let (integer_part, fraction_part) = match shortest.split_once('.') {
        Some((integer, fraction)) => (integer, fraction),
        None => (shortest.as_str(), ""),
    };

    // The digits we keep, integer and fraction together, as ASCII digits.
    let mut digits: Vec<u8> = Vec::with_capacity(integer_part.len() + precision + 1);
    digits.extend_from_slice(integer_part.as_bytes());
    let fraction = fraction_part.as_bytes();
    for index in 0..precision {
        digits.push(fraction.get(index).copied().unwrap_or(b'0'));
    }
    // HALF_UP on a decimal string: only the first dropped digit decides.
    let round_up = fraction.get(precision).is_some_and(|digit| *digit >= b'5');
    let mut integer_len = integer_part.len();
    if round_up {
        let mut carry = true;
        for digit in digits.iter_mut().rev() {
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                carry = false;
                break;
            }
        }
        if carry {
            digits.insert(0, b'1');
            integer_len += 1;
        }
    }

    let mut out = String::with_capacity(digits.len() + 2);
    // Java keeps the sign of negative values that round to zero ("-0.00").
    if value.is_sign_negative() {
        out.push('-');
    }
    for (index, digit) in digits.iter().enumerate() {
        if index == integer_len {
            out.push('.');
        }
        out.push(char::from(*digit));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_up_on_the_shortest_representation() {
        assert_eq!(java_fixed2(0.125), "0.13");
        assert_eq!(java_fixed2(1.005), "1.01");
        assert_eq!(java_fixed1(12.25), "12.3");
        assert_eq!(java_fixed2(2.675), "2.68");
        assert_eq!(java_fixed1(0.15), "0.2");
        assert_eq!(java_fixed1(0.05), "0.1");
        assert_eq!(java_fixed2(0.004999), "0.00");
        assert_eq!(java_fixed2(0.005), "0.01");
    }

    #[test]
    fn padding_integers_and_carries() {
        assert_eq!(java_fixed2(5.0), "5.00");
        assert_eq!(java_fixed2(0.0), "0.00");
        assert_eq!(java_fixed1(1.0), "1.0");
        assert_eq!(java_fixed2(9.995), "10.00");
        assert_eq!(java_fixed2(99.999), "100.00");
        assert_eq!(java_fixed1(0.96), "1.0");
        assert_eq!(java_fixed2(1899.99), "1899.99");
        assert_eq!(java_fixed2(0.1), "0.10");
        assert_eq!(java_fixed(2.5, 0), "3");
        assert_eq!(java_fixed(0.4, 0), "0");
    }

    #[test]
    fn negative_numbers_round_away_from_zero_and_keep_their_sign() {
        assert_eq!(java_fixed2(-1.005), "-1.01");
        assert_eq!(java_fixed2(-0.125), "-0.13");
        assert_eq!(java_fixed1(-12.25), "-12.3");
        assert_eq!(java_fixed2(-0.001), "-0.00");
        assert_eq!(java_fixed1(-10.0), "-10.0");
    }

    #[test]
    fn very_small_and_very_large_numbers() {
        assert_eq!(java_fixed2(1e-7), "0.00");
        assert_eq!(java_fixed1(0.000_000_5), "0.0");
        assert_eq!(java_fixed2(1e21), "1000000000000000000000.00");
        assert_eq!(java_fixed2(123_456_789.125), "123456789.13");
        assert_eq!(java_fixed1(1.5e300).len(), 301 + 2);
    }

    #[test]
    fn non_finite_values_are_written_like_java() {
        assert_eq!(java_fixed2(f64::INFINITY), "Infinity");
        assert_eq!(java_fixed2(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(java_fixed2(f64::NAN), "NaN");
    }
}
