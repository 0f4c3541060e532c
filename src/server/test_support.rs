//! A test client for a server listening on loopback, shared by the server's unit tests and the
//! daemon's (which run the same server behind the whole loop).

use std::net::SocketAddr;

/// Requests to one running server; every failure to connect or read is a test failure.
pub(crate) struct TestClient {
    pub(crate) address: SocketAddr,
    pub(crate) http: reqwest::Client,
}

impl TestClient {
    pub(crate) fn new(address: SocketAddr) -> TestClient {
        TestClient {
            address,
            http: reqwest::Client::new(),
        }
    }

    /// The full URL of `path` (which starts with `/`) on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `GET path`: the response, whatever its status.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// `GET path`: the status code alone.
    pub(crate) async fn get_status(&self, path: &str) -> u16 {
        self.get(path).await.status().as_u16()
    }

    /// `GET path`: the body as text, whatever the status.
    pub(crate) async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// `GET path`: the status code and the JSON body.
    pub(crate) async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        answer(self.get(path).await).await
    }

    /// `POST path` with no body, and the bearer `token` when there is one: the status code and
    /// the JSON body.
    pub(crate) async fn post(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut request = self.http.post(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.unwrap()).await
    }
}

/// The status code and JSON body of `response`.
pub(crate) async fn answer(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}
