//! Test logging: a subscriber that fails the test on any ERROR event.

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::{EnvFilter, Registry};

struct PanicOnError;

impl<S: Subscriber> Layer<S> for PanicOnError {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() == Level::ERROR {
            panic!(
                "ERROR logged by {}: {:?}",
                event.metadata().target(),
                event.metadata().fields()
            );
        }
    }
}

/// Installs, for the current thread, a subscriber that prints logs (filtered by `RUST_LOG`,
/// default `warn`) and panics on any ERROR event. Keep the guard alive for the whole test.
#[must_use]
pub fn fail_on_error() -> tracing::subscriber::DefaultGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let subscriber = Registry::default().with(PanicOnError).with(
        tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(filter),
    );
    tracing::subscriber::set_default(subscriber)
}
