//! Where the admin commands connect, and with which key.

use tollgate::keys::ApiKeySecret;
use tonic::transport::Channel;

/// Connection flags shared by the admin commands.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// identity-service's address.
    #[arg(
        long,
        env = "TOLLGATE_IDENTITY_URL",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub identity_url: String,
    /// event-service's address.
    #[arg(
        long,
        env = "TOLLGATE_EVENTS_URL",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    pub events_url: String,
    /// The API key to act with (checked for its format and checksum before anything is sent).
    #[arg(long, env = "TOLLGATE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<ApiKeySecret>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Remote {
    /// The key, or a message saying how to give one.
    pub fn key(&self) -> Result<&str, String> {
        self.api_key
            .as_ref()
            .map(ApiKeySecret::expose)
            .ok_or_else(|| "no API key: pass --api-key or set TOLLGATE_API_KEY (tollgate dev-key prints one for `tollgate up`)".to_owned())
    }

    /// A request carrying the key.
    pub fn request<T>(&self, message: T) -> Result<tonic::Request<T>, Box<dyn std::error::Error>> {
        Ok(tollgate::metadata::with_api_key(self.key()?, message)
            .map_err(|_| "the API key has characters a header cannot carry")?)
    }

    /// Every item of a paged List call, at most `limit`. `fetch` is given the page token and
    /// how many items are still wanted, and returns a page and the next token (empty at the end).
    pub async fn all_pages<T>(
        limit: usize,
        mut fetch: impl AsyncFnMut(
            String,
            usize,
        ) -> Result<(Vec<T>, String), Box<dyn std::error::Error>>,
    ) -> Result<Vec<T>, Box<dyn std::error::Error>> {
        let mut items = Vec::new();
        let mut page_token = String::new();
        while items.len() < limit {
            let (page, next) = fetch(page_token, limit - items.len()).await?;
            items.extend(page);
            if next.is_empty() {
                break;
            }
            page_token = next;
        }
        Ok(items)
    }

    /// A channel to identity-service.
    pub async fn identity(&self) -> Result<Channel, Box<dyn std::error::Error>> {
        connect(&self.identity_url).await
    }

    /// A channel to event-service.
    pub async fn events(&self) -> Result<Channel, Box<dyn std::error::Error>> {
        connect(&self.events_url).await
    }
}

async fn connect(url: &str) -> Result<Channel, Box<dyn std::error::Error>> {
    Ok(Channel::from_shared(url.to_owned())?
        .connect()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?)
}

/// How many times a call is tried, and the pause before each retry (doubling from the first,
/// capped at the last): the retry policy docs/operations.md gives for any client (a gRPC service
/// config), applied by hand because tonic does not read service configs.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

/// Makes `call` until it succeeds or fails with anything but UNAVAILABLE, at most [`ATTEMPTS`]
/// times. UNAVAILABLE means nothing is known to be done (a replica restarting, the database
/// away, identity-service unreachable), so only calls that may safely run twice go through
/// here: reads, and ingests whose every event carries an id.
pub async fn retrying<T, Fut>(mut call: impl FnMut() -> Fut) -> Result<T, tonic::Status>
where
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.code() == tonic::Code::Unavailable && attempt < ATTEMPTS => {
                eprintln!("{:?}: {}; retrying in {backoff:?}", e.code(), e.message());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A gRPC error as a person reads it: the status code and the server's message.
pub fn status(e: tonic::Status) -> Box<dyn std::error::Error> {
    format!("{:?}: {}", e.code(), e.message()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let key = ApiKeySecret::generate(tollgate::keys::Environment::Production).unwrap();
        let remote = Remote {
            identity_url: String::new(),
            events_url: String::new(),
            api_key: Some(key.clone()),
            json: false,
        };
        let printed = format!("{remote:?}");
        assert!(!printed.contains(key.expose()), "{printed}");
        assert!(printed.contains("sk_live_..."), "{printed}");
    }

    // Paused time: the backoff sleeps advance the clock instead of waiting.
    #[tokio::test(start_paused = true)]
    async fn retries_unavailable_only_and_gives_up_after_the_attempts() {
        let calls = std::cell::Cell::new(0);
        let answer = retrying(|| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(tonic::Status::unavailable("restarting"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 3);

        calls.set(0);
        let answer: Result<(), _> = retrying(|| {
            calls.set(calls.get() + 1);
            async { Err(tonic::Status::unavailable("down")) }
        })
        .await;
        assert_eq!(answer.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(calls.get(), ATTEMPTS);

        calls.set(0);
        let answer: Result<(), _> = retrying(|| {
            calls.set(calls.get() + 1);
            async { Err(tonic::Status::internal("internal error")) }
        })
        .await;
        assert_eq!(answer.unwrap_err().code(), tonic::Code::Internal);
        assert_eq!(calls.get(), 1, "only UNAVAILABLE is retried");
    }
}
