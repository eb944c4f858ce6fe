//! A Carpeta service ready to run: its kit service, its background tasks (outbox relays, queue
//! workers, saga engines) and its bus subscriptions, all stopped together.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use telar_bus::Subscription;
use telar_kit::Service;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Resolves when the service stops.
pub type Stop = BoxFuture<'static, ()>;
/// A background task: runs until its `Stop` resolves.
pub type Task = Box<dyn FnOnce(Stop) -> BoxFuture<'static, ()> + Send>;

pub struct App {
    pub service: Service,
    tasks: Vec<Task>,
    subscriptions: Vec<Subscription>,
}

impl App {
    pub fn new(service: Service) -> Self {
        App {
            service,
            tasks: Vec::new(),
            subscriptions: Vec::new(),
        }
    }

    pub fn task<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(Box::new(move |stop| Box::pin(task(stop))));
        self
    }

    pub fn subscription(mut self, subscription: Subscription) -> Self {
        self.subscriptions.push(subscription);
        self
    }

    pub fn name(&self) -> &str {
        self.service.name()
    }

    /// Serves until `shutdown`, then stops the consumers (in-flight deliveries settle) and the
    /// tasks (given 5 s to finish what they hold).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let handles: Vec<_> = self
            .tasks
            .into_iter()
            .map(|task| {
                let mut rx = stop_rx.clone();
                let stop: Stop = Box::pin(async move {
                    let _ = rx.wait_for(|stopped| *stopped).await;
                });
                tokio::spawn(task(stop))
            })
            .collect();
        let served = self.service.run(listener, shutdown).await;
        for subscription in self.subscriptions {
            subscription.stop().await;
        }
        let _ = stop_tx.send(true);
        for handle in handles {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
        served
    }
}
