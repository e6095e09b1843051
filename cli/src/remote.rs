//! Where the admin commands connect, and with which key.

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
    /// The API key to act with.
    #[arg(long, env = "TOLLGATE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Remote {
    /// The key, or a message saying how to give one.
    pub fn key(&self) -> Result<&str, String> {
        self.api_key
            .as_deref()
            .ok_or_else(|| "no API key: pass --api-key or set TOLLGATE_API_KEY (tollgate dev-key prints one for `tollgate up`)".to_owned())
    }

    /// A request carrying the key.
    pub fn request<T>(&self, message: T) -> Result<tonic::Request<T>, Box<dyn std::error::Error>> {
        let mut request = tonic::Request::new(message);
        let value = self
            .key()?
            .parse()
            .map_err(|_| "the API key has characters a header cannot carry")?;
        request
            .metadata_mut()
            .insert(tollgate::metadata::API_KEY_HEADER, value);
        Ok(request)
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
