//! How each platform says which way a call went and how it ended, mapped
//! onto [`Direction`] and [`Outcome`]: one table per platform, each beside
//! the documentation it follows.
//!
//! A value a table does not list maps to `None`. The outcome drives what
//! a CRM shows (HubSpot's call status and outcome, for one), and a wrong
//! "connected" on an unanswered call misleads a salesperson more than no
//! outcome does; so nothing is inferred from durations, transcripts or
//! look-alike names. The platform's own reason is kept beside the outcome
//! whatever it is.

use crate::report::{Direction, Outcome};

/// `inbound` or `outbound`, in any case: Retell's `direction` ([RTS]
/// RetellAI/retell-typescript-sdk @ b2740132 `src/resources/call.ts`,
/// `direction: 'inbound' | 'outbound'`) and ElevenLabs'
/// `metadata.phone_call.direction` (elevenlabs/elevenlabs-python @ 54e58995
/// `src/elevenlabs/types/telephony_direction.py`, `Literal["inbound",
/// "outbound"]`).
pub fn direction_word(word: &str) -> Option<Direction> {
    match word.trim().to_ascii_lowercase().as_str() {
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        _ => None,
    }
}

/// Vapi's `Call.type`: "`inboundPhoneCall`, `outboundPhoneCall`, `webCall`,
/// `vapi.websocketCall`" (VapiAI/docs @ eabfa530 `fern/apis/api/openapi.json`,
/// `Call.type`). A web or websocket call is neither.
pub fn vapi_direction(call_type: &str) -> Option<Direction> {
    match call_type {
        "inboundPhoneCall" => Some(Direction::Inbound),
        "outboundPhoneCall" => Some(Direction::Outbound),
        _ => None,
    }
}

/// VoiceDock's `call.type`: the seeds show `inbound_phone_call` (seeds 000,
/// 001, 004) and `inboundPhoneCall` (seed 003). Its docs list "Initiate
/// outbound call" but show no outbound report, so the outbound value is
/// read by the same pattern (`outbound_phone_call`, `outboundPhoneCall`,
/// Vapi's spelling of the same field); anything else is no direction.
pub fn voicedock_direction(call_type: &str) -> Option<Direction> {
    match call_type {
        "inbound_phone_call" | "inboundPhoneCall" => Some(Direction::Inbound),
        "outbound_phone_call" | "outboundPhoneCall" => Some(Direction::Outbound),
        _ => None,
    }
}

/// Vapi's `endedReason`, per https://docs.vapi.ai/calls/call-ended-reason
/// (VapiAI/docs @ 0c175e2f `fern/calls/call-ended-reason.mdx`; the full
/// enumeration is `Call.endedReason` in `fern/apis/api/openapi.json` @
/// eabfa530, 627 values):
///
/// | outcome | endedReason |
/// |---|---|
/// | connected | "Assistant actions … not errors" (`assistant-ended-call`, `…-after-message-spoken`, `…-with-hangup-task`, `assistant-said-end-call-phrase`, `assistant-forwarded-call`); the customer hanging up (`customer-ended-call` and its three transfer variants); "Timeouts" (`exceeded-max-duration`, `silence-timed-out`): "Call worked normally, then ended" |
/// | voicemail | `voicemail`: "The call was diverted to or detected as voicemail" |
/// | no_answer | `customer-did-not-answer`; SIP 408 and 480 on an outbound call, which the guide's quick diagnosis lists under "Phone rang but no answer" |
/// | busy | `customer-busy`: "The customer's line was busy (outbound calls)" |
/// | failed | every code with `error` or `failed` in it (`call.start.error-*`, `call.in-progress.error-*`, `pipeline-error-*`, `*-transcriber-failed`, …), and the documented failures without those words: `assistant-not-found`, `assistant-not-valid`, `assistant-not-provided`, `assistant-join-timed-out` ("failed to join"), `assistant-request-returned-invalid-assistant`, `assistant-request-returned-no-assistant`, `phone-call-provider-closed-websocket` and `worker-shutdown` ("Call dropped mid-conversation"), `phone-call-provider-bypass-enabled-but-no-call-received`, `twilio-reported-customer-misdialed`, `vonage-rejected` |
/// | none | the rest: cancellations and deletions (`manually-canceled`, `scheduled-call-deleted`, `call-deleted`), hooks (`call.ringing.hook-executed-*`, `call.ending.hook-executed-*`), forwarding legs (`call.forwarding.operator-busy`, `call.forwarding.no-answer`), a provider's bare "completed" (`vonage-completed`, `call.in-progress.twilio-completed-call`, `call.in-progress.sip-completed-call`, `vonage-disconnected`), `customer-did-not-give-microphone-permission` (web calls), `call.ringing.sip-inbound-caller-hungup-before-call-connect`, `assistant-request-returned-forwarding-phone-number`, and any code Vapi adds later |
pub fn vapi(ended_reason: &str) -> Option<Outcome> {
    const CONNECTED: &[&str] = &[
        "assistant-ended-call",
        "assistant-ended-call-after-message-spoken",
        "assistant-ended-call-with-hangup-task",
        "assistant-said-end-call-phrase",
        "assistant-forwarded-call",
        "customer-ended-call",
        "customer-ended-call-before-warm-transfer",
        "customer-ended-call-after-warm-transfer-attempt",
        "customer-ended-call-during-transfer",
        "exceeded-max-duration",
        "silence-timed-out",
    ];
    const NO_ANSWER: &[&str] = &[
        "customer-did-not-answer",
        "call.in-progress.error-providerfault-outbound-sip-408-request-timeout",
        "call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable",
    ];
    const FAILED: &[&str] = &[
        "assistant-not-found",
        "assistant-not-valid",
        "assistant-not-provided",
        "assistant-join-timed-out",
        "assistant-request-returned-invalid-assistant",
        "assistant-request-returned-no-assistant",
        "phone-call-provider-closed-websocket",
        "phone-call-provider-bypass-enabled-but-no-call-received",
        "twilio-reported-customer-misdialed",
        "vonage-rejected",
        "worker-shutdown",
    ];
    let reason = ended_reason.trim();
    if CONNECTED.contains(&reason) {
        Some(Outcome::Connected)
    } else if reason == "voicemail" {
        Some(Outcome::Voicemail)
    } else if NO_ANSWER.contains(&reason) {
        Some(Outcome::NoAnswer)
    } else if reason == "customer-busy" {
        Some(Outcome::Busy)
    } else if FAILED.contains(&reason) || reason.contains("error") || reason.contains("failed") {
        Some(Outcome::Failed)
    } else {
        None
    }
}

/// Retell's `disconnection_reason`, per
/// https://docs.retellai.com/reliability/debug-call-disconnect (the values
/// as enumerated in [RTS] `src/resources/call.ts`), and
/// `call_analysis.in_voicemail`, "Whether the call is entered voicemail",
/// which wins: an agent that leaves a message and hangs up ends with
/// `agent_hangup` in a voicemail box.
///
/// | outcome | disconnection_reason |
/// |---|---|
/// | connected | "Expected behavior": `user_hangup`, `agent_hangup`, `call_transfer`, `inactivity`, `max_duration_reached` |
/// | voicemail | `voicemail_reached`, or `in_voicemail: true` |
/// | no_answer | `dial_no_answer`: "the number dialed did not answer" |
/// | busy | `dial_busy`: "the number dialed is busy" |
/// | failed | `dial_failed`, `invalid_destination`, `telephony_provider_permission_denied`, `telephony_provider_unavailable`, `sip_routing_error`, `marked_as_spam` ("Outbound call not connected"), `concurrency_limit_reached`, `no_valid_payment`, `scam_detected` ("Error, …"), every `error_*`; with no reason, `call_status: error` ("Call encountered error") |
/// | none | `ivr_reached` (an IVR is neither a person nor a voicemail box), `user_declined`, and the values the page does not describe (`registered_call_timeout`, `no_concurrency_fallback`, `transfer_bridged`, `transfer_cancelled`, `manual_stopped`, `call_take_over`) |
pub fn retell(
    disconnection_reason: Option<&str>,
    in_voicemail: bool,
    call_status: Option<&str>,
) -> Option<Outcome> {
    const CONNECTED: &[&str] = &[
        "user_hangup",
        "agent_hangup",
        "call_transfer",
        "inactivity",
        "max_duration_reached",
    ];
    const FAILED: &[&str] = &[
        "dial_failed",
        "invalid_destination",
        "telephony_provider_permission_denied",
        "telephony_provider_unavailable",
        "sip_routing_error",
        "marked_as_spam",
        "concurrency_limit_reached",
        "no_valid_payment",
        "scam_detected",
    ];
    if in_voicemail {
        return Some(Outcome::Voicemail);
    }
    let Some(reason) = disconnection_reason.map(str::trim) else {
        return (call_status == Some("error")).then_some(Outcome::Failed);
    };
    if CONNECTED.contains(&reason) {
        Some(Outcome::Connected)
    } else if reason == "voicemail_reached" {
        Some(Outcome::Voicemail)
    } else if reason == "dial_no_answer" {
        Some(Outcome::NoAnswer)
    } else if reason == "dial_busy" {
        Some(Outcome::Busy)
    } else if FAILED.contains(&reason) || reason.starts_with("error_") {
        Some(Outcome::Failed)
    } else {
        None
    }
}

/// ElevenLabs documents no enumerated ended reason: the conversation's
/// `metadata.termination_reason` is free text (`termination_reason:
/// typing.Optional[str]`, elevenlabs/elevenlabs-python @ 54e58995
/// `src/elevenlabs/types/conversation_history_metadata_common_model.py`).
/// What it does enumerate is the conversation's `status`, "`initiated`,
/// `in-progress`, `processing`, `done`, `failed`"
/// (`get_conversation_response_model_status.py`): `failed` is a failed
/// call; `done` says the processing finished, not whether anyone answered,
/// so it is no outcome.
pub fn elevenlabs(status: Option<&str>) -> Option<Outcome> {
    (status.map(str::trim) == Some("failed")).then_some(Outcome::Failed)
}

/// Bland, per https://docs.bland.ai/api-v1/get/calls-id:
///
/// | outcome | field and value |
/// |---|---|
/// | failed | `queue_status` `pre_queue_error`, `queue_error` ("Valid phone number but to an unserviced area") or `call_error` ("Error occurred during live call") (`complete_error`, "after the call was completed", is not a failed call) |
/// | connected | `answered_by` `human`: "The call was answered by a human" |
/// | voicemail | `answered_by` `voicemail`: "answered by an answering machine or voicemail" |
/// | no_answer | `answered_by` `no-answer`: "The call was not answered" |
/// | none | `answered_by` `unknown` ("not enough audio … to make a determination"; Bland adds that it "is most likely a human", which is a guess) or `null` ("Not enabled, or still processing the result"); `call_ended_by` (`ASSISTANT`, `USER`) says who hung up, not whether anyone answered |
///
/// `answered_by` is filled only when the call was sent with
/// `answered_by_enabled: true`.
pub fn bland(answered_by: Option<&str>, queue_status: Option<&str>) -> Option<Outcome> {
    if matches!(
        queue_status.map(str::trim),
        Some("pre_queue_error" | "queue_error" | "call_error")
    ) {
        return Some(Outcome::Failed);
    }
    match answered_by.map(str::trim) {
        Some("human") => Some(Outcome::Connected),
        Some("voicemail") => Some(Outcome::Voicemail),
        Some("no-answer") => Some(Outcome::NoAnswer),
        _ => None,
    }
}

/// VoiceDock's `call.status`: "`ended` - Call ended normally",
/// "`ended-with-error` - Call ended due to error" (seed 004, Status
/// Update). Ending normally does not say whether the number called
/// answered, so only the error is an outcome.
pub fn voicedock(call_status: Option<&str>) -> Option<Outcome> {
    (call_status.map(str::trim) == Some("ended-with-error")).then_some(Outcome::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vapi_reasons_from_each_documented_group_map_to_their_outcome() {
        for (reason, outcome) in [
            ("customer-ended-call", Some(Outcome::Connected)),
            ("assistant-ended-call", Some(Outcome::Connected)),
            ("assistant-said-end-call-phrase", Some(Outcome::Connected)),
            ("assistant-forwarded-call", Some(Outcome::Connected)),
            ("silence-timed-out", Some(Outcome::Connected)),
            ("exceeded-max-duration", Some(Outcome::Connected)),
            (
                "customer-ended-call-during-transfer",
                Some(Outcome::Connected),
            ),
            ("voicemail", Some(Outcome::Voicemail)),
            ("customer-did-not-answer", Some(Outcome::NoAnswer)),
            (
                "call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable",
                Some(Outcome::NoAnswer),
            ),
            ("customer-busy", Some(Outcome::Busy)),
            (
                "call.start.error-subscription-insufficient-credits",
                Some(Outcome::Failed),
            ),
            ("pipeline-error-openai-llm-failed", Some(Outcome::Failed)),
            (
                "call.in-progress.error-vapifault-worker-died",
                Some(Outcome::Failed),
            ),
            (
                "call.in-progress.error-providerfault-outbound-sip-503-service-unavailable",
                Some(Outcome::Failed),
            ),
            ("twilio-failed-to-connect-call", Some(Outcome::Failed)),
            ("assistant-not-found", Some(Outcome::Failed)),
            ("assistant-join-timed-out", Some(Outcome::Failed)),
            (
                "phone-call-provider-closed-websocket",
                Some(Outcome::Failed),
            ),
            ("twilio-reported-customer-misdialed", Some(Outcome::Failed)),
            ("manually-canceled", None),
            ("call.forwarding.operator-busy", None),
            ("call.forwarding.no-answer", None),
            ("vonage-completed", None),
            ("customer-did-not-give-microphone-permission", None),
            ("a-reason-vapi-adds-next-year", None),
        ] {
            assert_eq!(vapi(reason), outcome, "{reason}");
        }
    }

    #[test]
    fn retell_reasons_map_to_their_outcome_and_in_voicemail_wins() {
        for (reason, outcome) in [
            ("user_hangup", Some(Outcome::Connected)),
            ("agent_hangup", Some(Outcome::Connected)),
            ("call_transfer", Some(Outcome::Connected)),
            ("inactivity", Some(Outcome::Connected)),
            ("max_duration_reached", Some(Outcome::Connected)),
            ("voicemail_reached", Some(Outcome::Voicemail)),
            ("dial_no_answer", Some(Outcome::NoAnswer)),
            ("dial_busy", Some(Outcome::Busy)),
            ("dial_failed", Some(Outcome::Failed)),
            ("invalid_destination", Some(Outcome::Failed)),
            ("marked_as_spam", Some(Outcome::Failed)),
            ("concurrency_limit_reached", Some(Outcome::Failed)),
            ("error_llm_websocket_open", Some(Outcome::Failed)),
            ("error_no_audio_received", Some(Outcome::Failed)),
            ("ivr_reached", None),
            ("user_declined", None),
            ("registered_call_timeout", None),
            ("transfer_bridged", None),
        ] {
            assert_eq!(
                retell(Some(reason), false, Some("ended")),
                outcome,
                "{reason}"
            );
        }
        assert_eq!(
            retell(Some("agent_hangup"), true, Some("ended")),
            Some(Outcome::Voicemail)
        );
        assert_eq!(retell(None, false, Some("error")), Some(Outcome::Failed));
        assert_eq!(retell(None, false, Some("ended")), None);
    }

    #[test]
    fn elevenlabs_and_voicedock_say_only_failed() {
        assert_eq!(elevenlabs(Some("failed")), Some(Outcome::Failed));
        assert_eq!(elevenlabs(Some("done")), None);
        assert_eq!(elevenlabs(None), None);
        assert_eq!(voicedock(Some("ended-with-error")), Some(Outcome::Failed));
        assert_eq!(voicedock(Some("ended")), None);
    }

    #[test]
    fn bland_errors_win_over_who_answered() {
        assert_eq!(
            bland(Some("human"), Some("complete")),
            Some(Outcome::Connected)
        );
        assert_eq!(bland(Some("voicemail"), None), Some(Outcome::Voicemail));
        assert_eq!(bland(Some("no-answer"), None), Some(Outcome::NoAnswer));
        assert_eq!(bland(Some("unknown"), None), None, "unknown is not guessed");
        assert_eq!(bland(None, Some("complete")), None);
        assert_eq!(
            bland(Some("human"), Some("call_error")),
            Some(Outcome::Failed)
        );
        assert_eq!(bland(None, Some("queue_error")), Some(Outcome::Failed));
        assert_eq!(
            bland(Some("human"), Some("complete_error")),
            Some(Outcome::Connected)
        );
    }

    #[test]
    fn directions_are_read_from_each_platforms_words() {
        assert_eq!(direction_word("Outbound"), Some(Direction::Outbound));
        assert_eq!(direction_word("inbound"), Some(Direction::Inbound));
        assert_eq!(direction_word("web"), None);
        assert_eq!(
            vapi_direction("outboundPhoneCall"),
            Some(Direction::Outbound)
        );
        assert_eq!(vapi_direction("inboundPhoneCall"), Some(Direction::Inbound));
        assert_eq!(vapi_direction("webCall"), None);
        assert_eq!(
            voicedock_direction("inbound_phone_call"),
            Some(Direction::Inbound)
        );
        assert_eq!(
            voicedock_direction("outboundPhoneCall"),
            Some(Direction::Outbound)
        );
        assert_eq!(voicedock_direction("web"), None);
    }
}
