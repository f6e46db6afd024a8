//! What the simulated CRMs hold besides records: custom fields with their
//! types and options, and deal pipelines with their stages. Each vendor's
//! module decides what a field's type admits and how a refusal reads; this
//! module only keeps the definitions, so that a test can set up the fields
//! and pipelines an account has ([`CrmSim::define_field`],
//! [`CrmSim::set_pipelines`]) and read the deals written
//! ([`CrmSim::deals_of`]).

use serde::Serialize;
use serde_json::Value;

use super::{CrmSim, Record};

/// The CRMs whose definitions the simulator keeps apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Vendor {
    Hubspot,
    Pipedrive,
    Salesforce,
    Gohighlevel,
}

/// One choice of a field with options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldOption {
    /// What a write names: Pipedrive's numeric option id, Salesforce's
    /// picklist `value`, GoHighLevel's option text.
    pub id: Value,
    pub label: String,
    /// Salesforce's `active`: an inactive picklist value is refused by a
    /// restricted picklist like one never listed.
    pub active: bool,
}

impl FieldOption {
    pub fn new(id: Value, label: &str) -> Self {
        Self {
            id,
            label: label.to_owned(),
            active: true,
        }
    }
}

/// A custom field of one object of one CRM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomField {
    pub vendor: Vendor,
    /// The object it belongs to, as the vendor names it: `person`, `deal`
    /// (Pipedrive), `Contact`, `Opportunity` (Salesforce), `contact`,
    /// `opportunity` (GoHighLevel).
    pub object: String,
    /// The vendor's id (GoHighLevel's field id; Pipedrive's numeric id;
    /// Salesforce's API name).
    pub id: String,
    /// What a write names the field by (Pipedrive's 40-character key,
    /// GoHighLevel's `fieldKey`, Salesforce's API name).
    pub key: String,
    pub name: String,
    /// The vendor's own type name (`varchar`, `enum`; `picklist`, `double`;
    /// `TEXT`, `SINGLE_OPTIONS` …).
    pub field_type: String,
    pub options: Vec<FieldOption>,
    /// Salesforce's restricted picklist: a value not listed is refused.
    pub restricted: bool,
}

impl CustomField {
    /// A field of `vendor`'s `object` without options; its id and key are
    /// `key` unless set otherwise.
    pub fn new(vendor: Vendor, object: &str, key: &str, name: &str, field_type: &str) -> Self {
        Self {
            vendor,
            object: object.to_owned(),
            id: key.to_owned(),
            key: key.to_owned(),
            name: name.to_owned(),
            field_type: field_type.to_owned(),
            options: Vec::new(),
            restricted: false,
        }
    }

    pub fn with_options(mut self, options: Vec<FieldOption>) -> Self {
        self.options = options;
        self
    }

    pub fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_owned();
        self
    }

    pub fn restricted(mut self) -> Self {
        self.restricted = true;
        self
    }

    /// Whether `value` names one of the field's active options.
    pub fn has_option(&self, value: &Value) -> bool {
        self.options.iter().any(|o| o.active && &o.id == value)
    }
}

/// A deal pipeline and its stages, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pipeline {
    pub id: String,
    pub label: String,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub id: String,
    pub label: String,
}

impl Pipeline {
    /// A pipeline whose stages are `(id, label)`.
    pub fn new(id: &str, label: &str, stages: &[(&str, &str)]) -> Self {
        Self {
            id: id.to_owned(),
            label: label.to_owned(),
            stages: stages
                .iter()
                .map(|(id, label)| Stage {
                    id: (*id).to_owned(),
                    label: (*label).to_owned(),
                })
                .collect(),
        }
    }

    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }
}

impl super::State {
    /// The custom fields of `vendor`'s `object`.
    pub(crate) fn fields_of<'a>(
        &'a self,
        vendor: Vendor,
        object: &'a str,
    ) -> impl Iterator<Item = &'a CustomField> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.vendor == vendor && f.object == object)
    }

    /// `vendor`'s pipelines.
    pub(crate) fn pipelines_of(&self, vendor: Vendor) -> &[Pipeline] {
        self.pipelines.get(&vendor).map_or(&[], Vec::as_slice)
    }
}

/// Every vendor's pipelines as a new account has them.
pub(crate) fn default_pipelines() -> std::collections::BTreeMap<Vendor, Vec<Pipeline>> {
    [
        (Vendor::Hubspot, super::hubspot::default_pipelines()),
        (Vendor::Pipedrive, super::pipedrive::default_pipelines()),
        (Vendor::Salesforce, super::salesforce::default_pipelines()),
        (Vendor::Gohighlevel, super::gohighlevel::default_pipelines()),
    ]
    .into_iter()
    .collect()
}

impl CrmSim {
    /// Adds a custom field to the account, as an admin would have created
    /// it (its options listed as given).
    pub fn define_field(&self, field: CustomField) {
        self.shared.lock().fields.push(field);
    }

    /// The custom fields the account holds for `vendor`.
    pub fn fields(&self, vendor: Vendor) -> Vec<CustomField> {
        let state = self.shared.lock();
        state
            .fields
            .iter()
            .filter(|f| f.vendor == vendor)
            .cloned()
            .collect()
    }

    /// Replaces `vendor`'s pipelines (a new account has the vendor's
    /// default one).
    pub fn set_pipelines(&self, vendor: Vendor, pipelines: Vec<Pipeline>) {
        self.shared.lock().pipelines.insert(vendor, pipelines);
    }

    /// `vendor`'s pipelines.
    pub fn pipelines(&self, vendor: Vendor) -> Vec<Pipeline> {
        self.shared.lock().pipelines_of(vendor).to_vec()
    }

    /// Salesforce's OpportunityContactRoles: (OpportunityId, ContactId),
    /// one entry per role created.
    pub fn opportunity_contact_roles(&self) -> Vec<(String, String)> {
        self.shared
            .lock()
            .salesforce
            .contact_roles
            .iter()
            .map(|(_, opportunity, contact)| (opportunity.clone(), contact.clone()))
            .collect()
    }

    /// The deals (opportunities) associated with the contact `contact`,
    /// oldest first.
    pub fn deals_of(&self, contact: &str) -> Vec<Record> {
        let state = self.shared.lock();
        state
            .deals
            .iter()
            .filter(|d| d.associations.iter().any(|a| a == contact))
            .cloned()
            .collect()
    }
}
