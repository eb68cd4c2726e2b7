//! What a broker speaks, and which version sansa uses for each API.
//!
//! A broker lists its version range per API in its ApiVersions answer. The
//! version sansa sends is the highest both sides speak, never one that
//! Kafka's specs mark as still unstable.

use crate::protocol::messages::api_versions_response::ApiVersionsResponse;
use crate::protocol::{ApiKey, VersionRange};

/// The broker's version range for each API key it announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionTable {
    /// Indexed by API key; `None` where the broker did not list the key.
    ranges: Vec<Option<VersionRange>>,
    /// Cluster-wide finalized features (ApiVersions v3+, KIP-584) and
    /// their max version level, such as `transaction.version` (KIP-890).
    features: Vec<(String, i16)>,
}

/// Finalized features kept per broker at most: Kafka has a handful; a
/// hostile answer listing more does not grow the table.
const MAX_FEATURES: usize = 32;

/// No API key is larger than this in any Kafka release; keys beyond it in a
/// hostile answer are ignored rather than sizing a table by them.
const MAX_KEY: i16 = 1024;

impl ApiVersionTable {
    /// The table of a broker's ApiVersions answer.
    pub fn from_response(resp: &ApiVersionsResponse) -> Self {
        let mut t = ApiVersionTable::default();
        for k in &resp.api_keys {
            t.set(k.api_key, VersionRange::new(k.min_version, k.max_version));
        }
        t.features = resp
            .finalized_features
            .iter()
            .take(MAX_FEATURES)
            .map(|f| (f.name.clone(), f.max_version_level))
            .collect();
        t
    }

    /// The finalized max version level of a cluster feature the broker
    /// announced (`transaction.version`, `metadata.version`, ...).
    pub fn finalized_feature(&self, name: &str) -> Option<i16> {
        self.features
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, level)| level)
    }

    /// Records that the broker speaks `range` of API `key`.
    pub fn set(&mut self, key: i16, range: VersionRange) {
        let Ok(idx) = usize::try_from(key) else {
            return;
        };
        if key > MAX_KEY {
            return;
        }
        if self.ranges.len() <= idx {
            self.ranges.resize(idx + 1, None);
        }
        self.ranges[idx] = Some(range);
    }

    /// The broker's range for `api`, if it announced one.
    pub fn broker_range(&self, api: ApiKey) -> Option<VersionRange> {
        usize::try_from(api.key())
            .ok()
            .and_then(|i| self.ranges.get(i).copied().flatten())
    }

    /// The version to use for `api`: the highest that the broker and sansa
    /// (up to the last stable version in the specs, and at most `cap` when
    /// given) both speak. `None` if they share none.
    pub fn negotiate(&self, api: ApiKey, cap: Option<i16>) -> Option<i16> {
        let ours = api.valid_versions();
        let max = cap.map_or(api.max_stable_version(), |c| {
            c.min(api.max_stable_version())
        });
        let ours = VersionRange::new(ours.min, max);
        let both = ours.intersect(self.broker_range(api)?);
        (!both.is_empty()).then_some(both.max)
    }

    /// As [`ApiVersionTable::negotiate`] up to `cap`, but past the last
    /// version the specs call stable: for an API whose latest version
    /// became stable upstream after the specs sansa was generated from
    /// (ConsumerGroupHeartbeat v1, stable since Apache Kafka 4.0, which
    /// librdkafka's mock cluster speaks alone).
    pub fn negotiate_past_stable(&self, api: ApiKey, cap: i16) -> Option<i16> {
        let ours = api.valid_versions();
        let ours = VersionRange::new(ours.min, cap.min(ours.max));
        let both = ours.intersect(self.broker_range(api)?);
        (!both.is_empty()).then_some(both.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey};

    #[test]
    fn finalized_features_are_read_and_bounded() {
        let feature = |name: &str, level| FinalizedFeatureKey {
            name: name.to_owned(),
            max_version_level: level,
            min_version_level: 1,
            ..Default::default()
        };
        let mut resp = ApiVersionsResponse {
            finalized_features: vec![
                feature("metadata.version", 20),
                feature("transaction.version", 2),
            ],
            ..Default::default()
        };
        let t = ApiVersionTable::from_response(&resp);
        assert_eq!(t.finalized_feature("transaction.version"), Some(2));
        assert_eq!(t.finalized_feature("group.version"), None);
        resp.finalized_features = (0..1000).map(|i| feature(&format!("f{i}"), 1)).collect();
        let t = ApiVersionTable::from_response(&resp);
        assert_eq!(t.features.len(), MAX_FEATURES);
    }

    fn table(entries: &[(i16, i16, i16)]) -> ApiVersionTable {
        ApiVersionTable::from_response(&ApiVersionsResponse {
            api_keys: entries
                .iter()
                .map(|&(k, min, max)| ApiVersion {
                    api_key: k,
                    min_version: min,
                    max_version: max,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn picks_the_highest_version_both_sides_speak() {
        let t = table(&[(0, 0, 7), (3, 0, 99), (1, 13, 13)]);
        assert_eq!(t.negotiate(ApiKey::Produce, None), Some(7));
        // Broker newer than our specs: our highest stable.
        assert_eq!(
            t.negotiate(ApiKey::Metadata, None),
            Some(ApiKey::Metadata.max_stable_version())
        );
        assert_eq!(t.negotiate(ApiKey::Fetch, Some(12)), None);
        assert_eq!(t.negotiate(ApiKey::Fetch, None), Some(13));
        assert_eq!(t.negotiate(ApiKey::ListOffsets, None), None);
    }

    #[test]
    fn unstable_latest_versions_are_never_negotiated() {
        for api in ApiKey::ALL {
            let v = api.valid_versions();
            let t = table(&[(api.key(), v.min, v.max)]);
            let got = t.negotiate(*api, None);
            assert_eq!(got, Some(api.max_stable_version()), "{api:?}");
            if api.latest_version_unstable() && v.max > v.min {
                assert!(got < Some(v.max));
            }
        }
    }

    #[test]
    fn hostile_keys_do_not_size_the_table() {
        let t = table(&[(i16::MAX, 0, 1), (-5, 0, 1)]);
        assert!(t.ranges.is_empty());
    }

    #[test]
    fn past_stable_reaches_a_version_the_specs_call_unstable() {
        let t = table(&[(ApiKey::ConsumerGroupHeartbeat.key(), 1, 1)]);
        assert_eq!(
            t.negotiate(ApiKey::ConsumerGroupHeartbeat, Some(1)),
            None,
            "v1 is unstable in the specs"
        );
        assert_eq!(
            t.negotiate_past_stable(ApiKey::ConsumerGroupHeartbeat, 1),
            Some(1)
        );
        assert_eq!(
            t.negotiate_past_stable(ApiKey::ConsumerGroupHeartbeat, 0),
            None
        );
    }
}
