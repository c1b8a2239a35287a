//! The topics of the device-shadow pattern.

use twinledger_core::TwinId;

/// Where a device publishes its reported state.
pub fn reported_topic(twin: &TwinId) -> String {
    format!("twins/{twin}/reported")
}

/// Where the ledger publishes a twin's desired state when it diverges.
pub fn desired_topic(twin: &TwinId) -> String {
    format!("twins/{twin}/desired")
}

/// The twin of a `twins/{id}/reported` topic, if the topic is one.
pub(crate) fn reported_twin(topic: &str) -> Option<TwinId> {
    let id = topic.strip_prefix("twins/")?.strip_suffix("/reported")?;
    if id.contains('/') {
        return None;
    }
    TwinId::new(id).ok()
}

/// Whether `topic` is some twin's desired-state topic (the ingestion hears its own corrections).
pub(crate) fn is_desired_topic(topic: &str) -> bool {
    topic
        .strip_prefix("twins/")
        .and_then(|t| t.strip_suffix("/desired"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reported_topics_of_valid_twins_are_taken() {
        let id = TwinId::new("pump-1").expect("id");
        assert_eq!(reported_twin(&reported_topic(&id)), Some(id.clone()));
        assert_eq!(desired_topic(&id), "twins/pump-1/desired");
        assert!(is_desired_topic(&desired_topic(&id)));
        assert!(!is_desired_topic("twins/pump-1/reported"));
        assert!(!is_desired_topic("twins/a/b/desired"));
        for bad in [
            "twins/pump-1/desired",
            "twins//reported",
            "twins/a/b/reported",
            "other/pump-1/reported",
            "twins/pump-1/reported/x",
        ] {
            assert_eq!(reported_twin(bad), None, "{bad}");
        }
    }
}
