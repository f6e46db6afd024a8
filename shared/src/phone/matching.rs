//! Whether a CRM record holds the caller's number, whatever format a human
//! typed it in.
//!
//! CRM searches are deliberately broad (the national significant number as a
//! substring, or HubSpot's calculated digits), so every candidate they return
//! is verified here: each stored number is parsed as a phone number and only
//! an equal E.164 form counts. Sharing the last digits never does, since
//! `+31 6 9934 5678` is a different person from `+31 6 1234 5678`.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::{Phone, Region, mask};

/// The caller's number, parsed once: E.164, its country and national
/// significant number (NSN, the digits after the country code).
#[derive(Clone, PartialEq, Eq)]
pub struct CallerNumber {
    e164: String,
    code: u16,
    nsn: String,
    region: Option<Region>,
}

impl CallerNumber {
    /// Parses `number` (national numbers read in `region`); `None` when it is
    /// not a phone number.
    pub fn parse(number: &str, region: Region) -> Option<Self> {
        let parsed = phonenumber::parse(Some(region.0), number).ok()?;
        let code = parsed.code().value();
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        let nsn = e164.strip_prefix(&format!("+{code}"))?.to_owned();
        Some(Self {
            e164,
            code,
            nsn,
            region: parsed.country().id().map(Region),
        })
    }

    /// The caller of a report, when its number could be normalised.
    pub fn from_phone(phone: &Phone) -> Option<Self> {
        Self::parse(phone.e164.as_deref()?, Region::default())
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The national significant number: digits only, no trunk prefix.
    pub fn nsn(&self) -> &str {
        &self.nsn
    }

    /// The digits of the number as dialled inside its country: the NSN
    /// behind the trunk prefix where the country has one (`0612345678` for
    /// `+31612345678`), else the NSN (`4155551212` for `+14155551212`).
    pub fn national_digits(&self) -> String {
        phonenumber::parse(None, &self.e164)
            .map(|parsed| {
                parsed
                    .format()
                    .mode(phonenumber::Mode::National)
                    .to_string()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect()
            })
            .unwrap_or_else(|_| self.nsn.clone())
    }

    pub fn country_code(&self) -> u16 {
        self.code
    }

    /// The caller's country, when the number belongs to exactly one.
    pub fn region(&self) -> Option<Region> {
        self.region
    }

    /// The number with all but its last four digits hidden, for logs.
    pub fn masked(&self) -> String {
        mask(&self.e164)
    }

    /// Whether `stored`, a number as typed into a record whose country is
    /// `record_country` (ISO 3166-1 alpha-2, when known), is this number.
    /// National numbers are read in the record's country, else in the
    /// caller's own: a salesperson types a local customer's number locally.
    pub fn is(&self, stored: &str, record_country: Option<&str>) -> bool {
        let region = record_country
            .and_then(|c| c.parse::<Region>().ok())
            .or(self.region)
            .unwrap_or_default();
        CallerNumber::parse(stored, region).is_some_and(|n| n.e164 == self.e164)
            || self.is_without_plus(stored)
    }

    /// `31612345678`: the country code typed without `+` or `00`, which a
    /// national reading takes for a (wrong) national number. Accepted only
    /// when the digits are exactly the country code followed by the NSN.
    fn is_without_plus(&self, stored: &str) -> bool {
        let digits: String = stored.chars().filter(char::is_ascii_digit).collect();
        let plain = !stored.trim_start().starts_with('+');
        plain && digits == self.e164[1..]
    }
}

impl std::fmt::Debug for CallerNumber {
    // Debug output ends up in logs; phone numbers are personal data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerNumber")
            .field("masked", &self.masked())
            .finish()
    }
}

/// Which field of a record held a number. The main phone field is the one a
/// business uses to identify a customer, so it ranks before the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PhoneField {
    Main,
    Mobile,
    Other,
}

impl PhoneField {
    fn rank(self) -> u8 {
        match self {
            PhoneField::Main => 0,
            PhoneField::Mobile | PhoneField::Other => 1,
        }
    }
}

/// A record a CRM search returned, with the numbers it stores as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub phones: Vec<(PhoneField, String)>,
    /// The record's own country (ISO 3166-1 alpha-2), when it has one.
    pub country: Option<String>,
    pub updated: Option<OffsetDateTime>,
}

impl Candidate {
    /// The best field of this record holding the caller's number, if any.
    pub fn matching_field(&self, caller: &CallerNumber) -> Option<PhoneField> {
        self.phones
            .iter()
            .filter(|(_, stored)| caller.is(stored, self.country.as_deref()))
            .map(|(field, _)| *field)
            .min_by_key(|field| field.rank())
    }
}

/// The record that is the caller, among `candidates`: only verified ones
/// count; several are ranked by the field that matched (main phone first),
/// then by the latest update. An ambiguity is logged with the record ids.
pub fn choose<'a>(caller: &CallerNumber, candidates: &'a [Candidate]) -> Option<&'a Candidate> {
    let mut verified: Vec<(u8, &Candidate)> = candidates
        .iter()
        .filter_map(|c| c.matching_field(caller).map(|f| (f.rank(), c)))
        .collect();
    // Newest first within a rank; a record without a date ranks last.
    verified.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| b.updated.cmp(&a.updated)));
    let (_, chosen) = verified.first()?;
    if verified.len() > 1 {
        let others: Vec<&str> = verified[1..].iter().map(|(_, c)| c.id.as_str()).collect();
        tracing::warn!(
            caller = %caller.masked(),
            chosen = %chosen.id,
            others = ?others,
            "several CRM contacts hold the caller's number; using the one whose main phone matches, most recently updated"
        );
    }
    Some(chosen)
}

/// A record's last-modified time as the CRMs write it: RFC 3339 (HubSpot,
/// GoHighLevel, Pipedrive v2), Salesforce's `2024-05-01T08:00:00.000+0000`,
/// or Pipedrive v1's `2024-05-01 08:00:00` (UTC).
pub fn parse_updated(text: &str) -> Option<OffsetDateTime> {
    let salesforce = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory][offset_minute]"
    );
    let pipedrive = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, salesforce))
        .ok()
        .or_else(|| {
            time::PrimitiveDateTime::parse(text, pipedrive)
                .ok()
                .map(time::PrimitiveDateTime::assume_utc)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nl_caller() -> CallerNumber {
        CallerNumber::parse("+31612345678", Region::US).unwrap()
    }

    #[test]
    fn national_digits_carry_the_trunk_prefix_where_the_country_has_one() {
        assert_eq!(nl_caller().national_digits(), "0612345678");
        let us = CallerNumber::parse("+14155551212", Region::US).unwrap();
        assert_eq!(us.national_digits(), "4155551212");
    }

    fn candidate(id: &str, phones: &[(PhoneField, &str)], updated: &str) -> Candidate {
        Candidate {
            id: id.to_owned(),
            phones: phones.iter().map(|(f, p)| (*f, (*p).to_owned())).collect(),
            country: None,
            updated: parse_updated(updated),
        }
    }

    #[test]
    fn the_caller_is_parsed_into_country_code_region_and_national_number() {
        let c = nl_caller();
        assert_eq!(c.e164(), "+31612345678");
        assert_eq!(c.country_code(), 31);
        assert_eq!(c.nsn(), "612345678");
        assert_eq!(c.region(), Some("NL".parse().unwrap()));
    }

    #[test]
    fn a_dutch_number_matches_in_every_format_it_is_typed_in() {
        let c = nl_caller();
        for stored in [
            "06 12345678",
            "+31 6 1234 5678",
            "0031612345678",
            "+31 (0)6 12345678",
            "31612345678",
            "+31612345678",
        ] {
            assert!(c.is(stored, None), "{stored} is the caller");
        }
    }

    #[test]
    fn american_numbers_with_parentheses_and_dashes_match() {
        let c = CallerNumber::parse("+14155550123", Region::US).unwrap();
        assert!(c.is("(415) 555-0123", None));
        assert!(c.is("1-415-555-0123", None));
        let d = CallerNumber::parse("+15132271572", Region::US).unwrap();
        assert!(d.is("513-227-1572", None));
        assert!(!d.is("513-227-1573", None));
    }

    #[test]
    fn a_number_sharing_the_last_seven_digits_never_matches() {
        let c = nl_caller();
        assert!(!c.is("+31 6 9934 5678", None));
        assert!(!c.is("06 99345678", None));
        assert!(!c.is("2345678", None));
        assert!(!c.is("+32612345678", None), "same digits, other country");
    }

    #[test]
    fn a_national_number_is_read_in_the_records_country_when_it_has_one() {
        let c = CallerNumber::parse("+493012345678", Region::US).unwrap();
        // Without a country, the caller's own (DE) is used.
        assert!(c.is("030 12345678", None));
        assert!(c.is("030 12345678", Some("de")));
        assert!(!c.is("030 12345678", Some("NL")));
        // A record's country that is not an ISO code falls back to the caller's.
        assert!(c.is("030 12345678", Some("Germany")));
    }

    #[test]
    fn the_main_phone_field_wins_over_a_more_recently_updated_mobile() {
        let c = nl_caller();
        let candidates = [
            candidate(
                "mobile",
                &[(PhoneField::Mobile, "06 12345678")],
                "2026-05-01T00:00:00Z",
            ),
            candidate(
                "main",
                &[(PhoneField::Main, "0612345678")],
                "2025-01-01T00:00:00Z",
            ),
        ];
        assert_eq!(choose(&c, &candidates).unwrap().id, "main");
    }

    #[test]
    fn among_equal_fields_the_most_recently_updated_record_wins() {
        let c = nl_caller();
        let candidates = [
            candidate(
                "old",
                &[(PhoneField::Main, "06 12345678")],
                "2024-01-01T00:00:00.000+0000",
            ),
            candidate(
                "decoy",
                &[(PhoneField::Main, "06 99345678")],
                "2026-09-01T00:00:00.000+0000",
            ),
            candidate(
                "new",
                &[(PhoneField::Main, "+31 6 1234 5678")],
                "2026-01-01T00:00:00.000+0000",
            ),
        ];
        assert_eq!(choose(&c, &candidates).unwrap().id, "new");
    }

    #[test]
    fn no_candidate_is_chosen_when_none_holds_the_number() {
        let c = nl_caller();
        let candidates = [candidate(
            "decoy",
            &[(PhoneField::Main, "06 99345678"), (PhoneField::Other, "")],
            "2024-05-01 08:00:00",
        )];
        assert!(choose(&c, &candidates).is_none());
    }

    #[test]
    fn update_times_are_read_in_each_crms_format() {
        let expected = parse_updated("2024-05-01T08:00:00Z").unwrap();
        assert_eq!(
            parse_updated("2024-05-01T08:00:00.000+0000"),
            Some(expected)
        );
        assert_eq!(parse_updated("2024-05-01 08:00:00"), Some(expected));
        assert_eq!(parse_updated("yesterday"), None);
    }
}
