//! A minimal unary gRPC client over one HTTP/2 connection, for the benchmark's load generator.
//!
//! tonic's client (a buffered, load-balanced channel) costs more CPU per call than a tonic
//! server spends answering a health check, so on a core of its own it, not the server, would
//! set the "floor". This client sends pre-encoded messages straight onto h2 streams, so the
//! server is what saturates. It speaks only what the benchmark needs: unary calls, metadata,
//! and the status in headers or trailers; and, for the HTTP/JSON routes, a JSON POST over the
//! same kind of connection, so that the two APIs are compared on one transport.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use tonic::{Code, Status};

/// One HTTP/2 connection to a gRPC server.
#[derive(Debug, Clone)]
pub struct H2Client {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

impl H2Client {
    /// Connects to `addr` (plaintext h2c).
    pub async fn connect(addr: SocketAddr) -> Result<Self, Box<dyn std::error::Error>> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake::<_, Bytes>(tcp)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            send,
            authority: addr.to_string(),
        })
    }

    /// Calls `path` (`/package.Service/Method`) with an encoded message and metadata; returns
    /// the encoded response message.
    pub async fn unary(
        &self,
        path: &str,
        message: &Bytes,
        metadata: &[(&'static str, &str)],
    ) -> Result<Bytes, Status> {
        let (parts, data, trailers) = self
            .exchange(path, "application/grpc", frame(message), metadata)
            .await?;
        // A failed call is often trailers-only: the status comes with the headers.
        status_of(&parts.headers)?;
        if let Some(trailers) = trailers {
            status_of(&trailers)?;
        }
        // Skip the 5-byte gRPC frame header (compression flag and length).
        if data.len() < 5 {
            return Err(Status::internal(
                "response shorter than a gRPC frame header",
            ));
        }
        Ok(data.slice(5..))
    }

    /// POSTs a JSON `body` to an HTTP route over the same kind of connection; an answer other
    /// than 200 is an error carrying its body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Bytes,
        headers: &[(&'static str, &str)],
    ) -> Result<Bytes, Status> {
        let (parts, data, _) = self
            .exchange(path, "application/json", body.clone(), headers)
            .await?;
        if parts.status != http::StatusCode::OK {
            return Err(Status::unknown(format!(
                "{path} answered {}: {}",
                parts.status,
                String::from_utf8_lossy(&data)
            )));
        }
        Ok(data)
    }

    /// Sends one request and reads the whole response: its head, body and trailers.
    async fn exchange(
        &self,
        path: &str,
        content_type: &'static str,
        body: Bytes,
        headers: &[(&'static str, &str)],
    ) -> Result<(http::response::Parts, Bytes, Option<http::HeaderMap>), Status> {
        let fail = |e: h2::Error| Status::unavailable(e.to_string());
        let mut send = self.send.clone().ready().await.map_err(fail)?;
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.authority))
            .header("content-type", content_type)
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(())
            .map_err(|e| Status::internal(e.to_string()))?;
        let (response, mut stream) = send.send_request(request, false).map_err(fail)?;
        stream.send_data(body, true).map_err(fail)?;
        let (parts, mut body) = response.await.map_err(fail)?.into_parts();
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(fail)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(fail)?;
        Ok((parts, data.freeze(), trailers))
    }
}

/// A message in a gRPC length-prefixed frame.
fn frame(message: &Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(message);
    out.freeze()
}

fn status_of(headers: &http::HeaderMap) -> Result<(), Status> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code = code
        .to_str()
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
        .unwrap_or(2);
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    Err(Status::new(Code::from(code), message.to_owned()))
}

/// Encodes a prost message.
pub fn encode(message: &impl prost::Message) -> Bytes {
    Bytes::from(message.encode_to_vec())
}
