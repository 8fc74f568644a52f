//! Value parsers that bound every numeric flag: a value outside its range (zero limits, NaN,
//! infinities, absurd sizes) is refused by clap before anything starts, in one line naming the
//! flag, the value and the accepted range (`invalid value 'NaN' for '--seconds <SECONDS>':
//! expected a number in (0, 3600]`).

use std::fmt::Display;
use std::str::FromStr;

/// An integer flag in `lo..=hi`.
pub fn int_in<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |text| {
        text.trim()
            .parse::<T>()
            .ok()
            .filter(|v| *v >= lo && *v <= hi)
            .ok_or_else(|| format!("expected an integer from {lo} to {hi}"))
    }
}

/// A float flag in `(0, hi]` (NaN and infinities refused).
pub fn positive_up_to(hi: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |text| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| *v > 0.0 && *v <= hi)
            .ok_or_else(|| format!("expected a number in (0, {hi}]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_zero_nan_infinity_and_absurd_values() {
        let bytes = int_in::<usize>(1024, 1 << 30);
        assert_eq!(bytes("65536"), Ok(65536));
        for bad in ["0", "1023", "1073741825", "-1", "1e6", "", "x"] {
            assert_eq!(bytes(bad), Err("expected an integer from 1024 to 1073741824".into()), "{bad}");
        }
        let seconds = positive_up_to(3600.0);
        assert_eq!(seconds("0.5"), Ok(0.5));
        assert_eq!(seconds("3600"), Ok(3600.0));
        for bad in ["NaN", "nan", "inf", "-inf", "1e20", "0", "-1", "3600.1", "x"] {
            assert_eq!(seconds(bad), Err("expected a number in (0, 3600]".into()), "{bad}");
        }
    }
}
