//! A stand-in for the Ronglian (容联云) SMS API on 127.0.0.1, for tests that
//! need the gateway to be slow or to fail: it answers the TemplateSMS call
//! with an error for the first `failures` requests, then with success, each
//! after `delay`. It records every request body it got.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

pub struct FakeGateway {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl FakeGateway {
    pub async fn start(failures: usize, delay: Duration) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (requests.clone(), bodies.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (count, seen) = (count.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut length = 0usize;
                        let mut line = String::new();
                        // Request line and headers.
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(value) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        if let Ok(json) = serde_json::from_slice(&body) {
                            seen.lock().unwrap().push(json);
                        }
                        tokio::time::sleep(delay).await;
                        let answer = if n < failures {
                            r#"{"statusCode": "160038", "statusMsg": "too many codes in a short time (fake)"}"#
                                .to_owned()
                        } else {
                            format!(
                                r#"{{"statusCode": "000000", "templateSMS": {{"dateCreated": "20261125", "smsMessageSid": "fake-{n}"}}}}"#
                            )
                        };
                        let response = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if reader
                            .get_mut()
                            .write_all(response.as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        FakeGateway {
            url,
            requests,
            bodies,
        }
    }

    /// Environment for a worker that should use this gateway.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SMS_GATEWAY", "ronglian".to_owned()),
            ("RONGLIAN_BASE_URL", self.url.clone()),
            (
                "RONGLIAN_ACCOUNT_SID",
                "8aaf0708697b6beb0169c1f12db32e2a".to_owned(),
            ),
            ("RONGLIAN_AUTH_TOKEN", "test-token".to_owned()),
            (
                "RONGLIAN_APP_ID",
                "8aaf0708697b6beb0169c1f12e082e30".to_owned(),
            ),
            ("SMS_RETRY_BACKOFF", "0.2".to_owned()),
        ]
    }

    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
