//! Unix milliseconds: how queue headers, spool frames, signatures and the
//! platforms' APIs write times, converted in one place.

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, truncated toward zero.
pub fn unix_ms(at: OffsetDateTime) -> i64 {
    // `OffsetDateTime` spans about ten thousand years either side of the
    // epoch, a few 10^14 ms: the conversion cannot fail.
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch; `None` outside the
/// range `OffsetDateTime` represents.
pub fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_and_drop_what_is_finer() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_754_042_500_123_456_789).unwrap();
        assert_eq!(unix_ms(at), 1_754_042_500_123);
        assert_eq!(
            from_unix_ms(1_754_042_500_123).map(|t| t.unix_timestamp_nanos()),
            Some(1_754_042_500_123_000_000)
        );
    }

    #[test]
    fn times_before_the_epoch_truncate_toward_zero() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(-1_500_400_000).unwrap();
        assert_eq!(unix_ms(at), -1_500);
        assert_eq!(
            from_unix_ms(-1_500).map(|t| t.unix_timestamp_nanos()),
            Some(-1_500_000_000)
        );
    }

    #[test]
    fn a_time_out_of_range_is_none() {
        assert_eq!(from_unix_ms(i64::MAX), None);
        assert_eq!(from_unix_ms(i64::MIN), None);
    }
}
