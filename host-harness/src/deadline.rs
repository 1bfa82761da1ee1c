//! Deadlines on HTTP bodies, so that a peer that stops sending cannot hold an instance.
//!
//! [`TimedBody`] wraps a body and fails it with `connection-read-timeout` when the whole body
//! has not arrived by a deadline, or (optionally) when no data has arrived for a while. The
//! guest reads that error as a timeout (`wasi:http/types.http-error-code`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error;

/// A body that fails with [`Error::ConnectionReadTimeout`] once `total` passes, or once
/// `between` passes without a frame.
pub struct TimedBody<B> {
    inner: Pin<Box<B>>,
    total: Pin<Box<Sleep>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    timed_out: bool,
}

impl<B> TimedBody<B> {
    /// `inner`, which must end by `deadline`, with at most `between` between two frames.
    pub fn new(inner: B, deadline: Instant, between: Option<Duration>) -> Self {
        TimedBody {
            inner: Box::pin(inner),
            total: Box::pin(tokio::time::sleep_until(deadline)),
            idle: between.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            timed_out: false,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((between, idle)) = &mut this.idle {
                    idle.as_mut().reset(Instant::now() + *between);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let idle_passed = this
                    .idle
                    .as_mut()
                    .is_some_and(|(_, idle)| idle.as_mut().poll(cx).is_ready());
                if this.total.as_mut().poll(cx).is_ready() || idle_passed {
                    this.timed_out = true;
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body fed by the test, frame by frame.
    struct Fed(mpsc::UnboundedReceiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn fed() -> (mpsc::UnboundedSender<Bytes>, Fed) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Fed(rx))
    }

    #[tokio::test]
    async fn a_body_that_stops_midway_fails_with_a_read_timeout_after_the_idle_limit() {
        let (tx, body) = fed();
        tx.send(Bytes::from_static(b"half")).unwrap();
        let far = Instant::now() + Duration::from_secs(3600);
        let mut body = TimedBody::new(body, far, Some(Duration::from_millis(200)));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"half"));
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
        assert!(body.frame().await.is_none(), "nothing after the timeout");
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_that_trickles_forever_fails_at_the_total_deadline() {
        let (tx, body) = fed();
        let mut body = TimedBody::new(
            body,
            Instant::now() + Duration::from_millis(500),
            Some(Duration::from_secs(60)),
        );
        let feeder = tokio::spawn(async move {
            while tx.send(Bytes::from_static(b".")).is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut frames = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => frames += 1,
                Some(Err(e)) => break e,
                None => panic!("the body ended instead of timing out"),
            }
        };
        assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
        assert!(frames >= 1, "data kept arriving until the deadline");
        drop(body);
        feeder.await.unwrap();
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_passed_through_whole() {
        let (tx, body) = fed();
        for part in [&b"one "[..], b"two"] {
            tx.send(Bytes::copy_from_slice(part)).unwrap();
        }
        drop(tx);
        let body = TimedBody::new(
            body,
            Instant::now() + Duration::from_secs(60),
            Some(Duration::from_secs(60)),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"one two"));
    }
}
