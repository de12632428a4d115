//! The `send` import: a guest's HTTP request, counted and bounded, then handed to the outbound capability
//! for the system the call is for.

use super::*;

impl CallState {
    /// The `send` import: counts, then hands the request to the outbound capability for this call's system.
    pub async fn send_http(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let started = Instant::now();
        let result = self.send_checked(request).await;
        if started.elapsed() >= Duration::from_millis(1) {
            self.waited = true;
        }
        if let Err(HttpError::Denied(reason)) = &result {
            self.denied += 1;
            self.last_denied = Some(reason.clone());
        }
        result
    }

    /// The `send-list` import (contract 0.3.0): sends as [`send_http`](Self::send_http) does, and keeps the
    /// elements of the array in a 2xx answer's top-level member `member` for the call's page, answering the
    /// rest of the answer and how many it kept; any other answer is handed back whole. Its body was scrubbed
    /// of the call's secrets, so the kept elements are too.
    pub async fn send_list(
        &mut self,
        request: HttpRequest,
        member: &str,
    ) -> Result<(HttpResponse, Option<u32>), HttpError> {
        self.listed = None;
        let mut response = self.send_http(request).await?;
        if !(200..300).contains(&response.status) {
            return Ok((response, None));
        }
        let text = match String::from_utf8(std::mem::take(&mut response.body)) {
            Ok(text) => text,
            Err(e) => {
                response.body = e.into_bytes();
                return Ok((response, None));
            }
        };
        match provisio_scim::list::split_member(&text, member) {
            Some(split) => {
                let count = u32::try_from(split.items.len()).unwrap_or(u32::MAX);
                response.body = split.rest;
                // Its body was scrubbed with the secrets as they are now.
                self.listed = Some(super::state::Listed::new(text, split.items, self.secrets.revision()));
                Ok((response, Some(count)))
            }
            None => {
                response.body = text.into_bytes();
                Ok((response, None))
            }
        }
    }

    pub(super) async fn send_checked(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.requests += 1;
        if self.requests > self.limits.max_requests_per_call {
            return Err(HttpError::Denied(format!(
                "more than {} requests in one call",
                self.limits.max_requests_per_call
            )));
        }
        let Some(endpoint) = self.endpoint.as_ref() else {
            return Err(HttpError::Denied("no system is configured for this call".into()));
        };
        // The request's own bounds first (method, headers, path, body), then the call's byte budget.
        self.outbound.check(&request)?;
        let size = request.path.len()
            + request.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + request.body.as_ref().map_or(0, Vec::len);
        self.request_bytes = self.request_bytes.saturating_add(size);
        if self.request_bytes > self.limits.max_request_bytes_per_call {
            return Err(HttpError::Denied(format!(
                "requests of more than {} bytes in one call (the limit of bytes sent per call)",
                self.limits.max_request_bytes_per_call
            )));
        }
        // A guest that is past its deadline gets no more network.
        if Instant::now() >= self.deadline {
            self.host_deadline_hit = true;
            return Err(HttpError::Timeout(format!(
                "the call's time limit of {:?} is reached",
                self.limits.timeout
            )));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let sent = match &self.home {
            // A demoted call's requests are still driven by the service's runtime: pooled connections
            // and cached tokens are shared with well-behaved systems.
            Some(home) if self.demoted.load(std::sync::atomic::Ordering::Relaxed) => {
                let (outbound, endpoint) = (self.outbound.clone(), endpoint.clone());
                let mut secrets = std::mem::take(&mut self.secrets);
                let mut task = background::AbortOnDrop(home.spawn(async move {
                    let sent =
                        tokio::time::timeout(remaining, outbound.send_scrubbed(&endpoint, request, &mut secrets)).await;
                    (sent, secrets)
                }));
                match (&mut task.0).await {
                    Ok((sent, secrets)) => {
                        self.secrets = secrets;
                        sent
                    }
                    // A panic there is this call's panic: the runtime turns it into the call's error.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => {
                        // The attached credentials went with the task: scrub with the system's own.
                        self.secrets = self.endpoint.as_ref().map(Secrets::of_endpoint).unwrap_or_default();
                        Ok(Err(HttpError::Unreachable(format!(
                            "the request failed in the host: {e}"
                        ))))
                    }
                }
            }
            // Boxed: the request's future (hyper's client inside) is large, and this one is moved into the
            // guest's fiber before it runs (docs/performance.md, "twenty-first session").
            _ => {
                tokio::time::timeout(
                    remaining,
                    Box::pin(self.outbound.send_scrubbed(endpoint, request, &mut self.secrets)),
                )
                .await
            }
        };
        match sent {
            Ok(result) => result,
            Err(_) => {
                self.host_deadline_hit = true;
                Err(HttpError::Timeout(format!(
                    "the call's time limit of {:?} was reached during the request",
                    self.limits.timeout
                )))
            }
        }
    }

    /// The `log` import, rate-limited per call.
    pub fn guest_log(&mut self, level: tracing::Level, message: &str) {
        self.log_lines += 1;
        if self.log_lines > self.limits.max_log_lines {
            if self.log_lines == self.limits.max_log_lines + 1 {
                tracing::warn!(plugin = %self.plugin, "plugin log limit reached; further lines of this call are dropped");
            }
            return;
        }
        // Control characters would let a guest forge log lines.
        let message: String = message
            .chars()
            .take(2000)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let system = self.endpoint.as_ref().map(|e| e.system_id.as_str()).unwrap_or("");
        match level {
            tracing::Level::ERROR => tracing::error!(plugin = %self.plugin, system, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin = %self.plugin, system, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin = %self.plugin, system, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin = %self.plugin, system, "{message}"),
            _ => tracing::trace!(plugin = %self.plugin, system, "{message}"),
        }
    }
}
