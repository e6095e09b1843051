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
}
