use super::*;

#[test]
#[should_panic(expected = "ERROR logged")]
fn an_error_log_fails_the_test() {
    let _log = crate::logging::fail_on_error();
    tracing::error!("something is wrong");
}

#[test]
fn warnings_do_not_fail_the_test() {
    let _log = crate::logging::fail_on_error();
    tracing::warn!("worth a look");
}

#[test]
fn app_packets_carry_their_sequence_number() {
    assert_eq!(app_seq(&app_packet(77, 1400)), Some(77));
    assert_eq!(app_packet(1, 1400).len(), 1400);
}
