//! Caller phone numbers, normalised to E.164 where possible.
//!
//! CRMs store numbers in whatever format a human typed, so callsync searches
//! and creates contacts by the E.164 form. A number that cannot be normalised
//! is kept raw and flagged instead of being dropped: the call is still synced,
//! and the flag tells the worker not to treat the raw text as a unique key.

pub mod matching;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO 3166-1 alpha-2 region used for numbers written in national format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region(phonenumber::country::Id);

impl Region {
    pub const US: Region = Region(phonenumber::country::Id::US);
}

impl Default for Region {
    fn default() -> Self {
        Self::US
    }
}

impl FromStr for Region {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .map(Region)
            .map_err(|_| format!("{s:?} is not an ISO 3166-1 alpha-2 country code"))
    }
}

/// A caller's number as received, with its E.164 form when one exists.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    /// `+<country><number>`, present when the number could be normalised.
    pub e164: Option<String>,
    /// The number exactly as the provider sent it.
    pub raw: String,
}

impl Phone {
    /// Normalises `raw` with `region` as the default for national numbers.
    pub fn parse(raw: &str, region: Region) -> Self {
        let e164 = phonenumber::parse(Some(region.0), raw)
            .ok()
            .map(|n| n.format().mode(phonenumber::Mode::E164).to_string());
        Self {
            e164,
            raw: raw.to_owned(),
        }
    }

    /// True when the number could not be normalised and is kept raw.
    pub fn is_unnormalised(&self) -> bool {
        self.e164.is_none()
    }

    /// The form to store in and search the CRM with.
    pub fn best(&self) -> &str {
        self.e164.as_deref().unwrap_or(&self.raw)
    }

    /// The number with all but the last four digits hidden, for logs.
    pub fn masked(&self) -> String {
        mask(self.best())
    }
}

/// Hides all but the last four digits of a phone number (`+31612345678` →
/// `*******5678`), so that logs can correlate calls without holding personal data.
pub fn mask(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let keep = digits.len().saturating_sub(4);
    digits
        .iter()
        .enumerate()
        .map(|(i, c)| if i < keep { '*' } else { *c })
        .collect()
}

impl fmt::Debug for Phone {
    // Debug output ends up in logs; phone numbers are personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Phone")
            .field("masked", &self.masked())
            .field("normalised", &self.e164.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_international_number_keeps_its_country() {
        let p = Phone::parse("+31612345678", Region::US);
        assert_eq!(p.e164.as_deref(), Some("+31612345678"));
    }

    #[test]
    fn a_dashed_north_american_number_is_normalised() {
        let p = Phone::parse("+1-555-123-4567", Region::US);
        assert_eq!(p.e164.as_deref(), Some("+15551234567"));
    }

    #[test]
    fn a_national_number_uses_the_default_region() {
        let nl: Region = "nl".parse().unwrap();
        let p = Phone::parse("06 98765432", nl);
        assert_eq!(p.e164.as_deref(), Some("+31698765432"));
    }

    #[test]
    fn an_unparseable_number_is_kept_raw_and_flagged() {
        let p = Phone::parse("call me maybe", Region::US);
        assert!(p.is_unnormalised());
        assert_eq!(p.best(), "call me maybe");
    }

    #[test]
    fn masking_keeps_only_the_last_four_digits() {
        assert_eq!(mask("+31612345678"), "*******5678");
        assert_eq!(mask("123"), "123");
        let p = Phone::parse("+31612345678", Region::US);
        assert!(!format!("{p:?}").contains("612345"));
    }

    #[test]
    fn an_unknown_region_is_refused() {
        assert!("XX".parse::<Region>().is_err());
        assert!("de".parse::<Region>().is_ok());
    }
}
