//! Calls to BigCommerce and QuickBooks as the jobs make them: every outcome that is not the
//! expected entity becomes a classified [`Failure`] (what went wrong, whether a retry can help,
//! what to do), so the jobs only ever deal in data or failures.

use std::cell::RefCell;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::crypto::Keyring;
use crate::host::Host;
use crate::http::{HttpRequest, HttpResponse};
use crate::models::bigcommerce;
use crate::models::quickbooks::{self, QboError};
use crate::settings::{self, BigCommerceSettings, QuickBooksSettings};
use crate::sync::connection::{self, Access, CallError, ConnectionError, Vault};
use crate::sync::failure::{self, Failure, Service};

/// Everything needed to talk to both services.
pub struct Upstreams {
    pub bc: BigCommerceSettings,
    pub qbo: QuickBooksSettings,
    pub keyring: Keyring,
    /// The QuickBooks access this job last used and when it was obtained: the job's next
    /// QuickBooks requests reuse it instead of reading the credentials again (three key-value
    /// round trips each). A 401 still replaces it, as before.
    pub access_memo: RefCell<Option<(Access, DateTime<Utc>)>>,
}

/// How long a job reuses the access it obtained without reading the stored credentials
/// again — far inside the refresh margin, so the token it reuses is still valid.
const ACCESS_MEMO_S: i64 = 60;

/// Reads the settings every job needs.
pub fn upstreams(host: &mut dyn Host) -> Result<Upstreams, Failure> {
    let bc = BigCommerceSettings::read(host).map_err(|e| Failure::configuration(&e.to_string()))?;
    let qbo = QuickBooksSettings::read(host).map_err(|e| Failure::configuration(&e.to_string()))?;
    let keyring = Keyring::from_config(
        settings::optional(host, "encryption_key").as_deref(),
        settings::optional(host, "encryption_key_previous").as_deref(),
    )
    .map_err(|e| Failure::configuration(&e.to_string()))?;
    Ok(Upstreams {
        bc,
        qbo,
        keyring,
        access_memo: RefCell::new(None),
    })
}

/// A QuickBooks response that carried a fault, with the fault kept for callers that react to
/// specific codes (5010, 6240, 610).
#[derive(Debug)]
pub struct QboFailure {
    pub failure: Failure,
    pub fault: Option<QboError>,
}

impl From<Failure> for QboFailure {
    fn from(failure: Failure) -> Self {
        QboFailure {
            failure,
            fault: None,
        }
    }
}

impl QboFailure {
    /// Whether QuickBooks answered with this fault code.
    pub fn has_code(&self, code: &str) -> bool {
        self.fault.as_ref().is_some_and(|f| f.has_code(code))
    }
}

impl Upstreams {
    /// Sends a BigCommerce request; non-2xx (except 204) becomes a classified failure.
    pub fn bc_send(
        &self,
        host: &mut dyn Host,
        request: &HttpRequest,
    ) -> Result<HttpResponse, Failure> {
        let resp = host
            .http(request)
            .map_err(|e| failure::classify_transport(Service::BigCommerce, &e))?;
        if resp.is_success() {
            return Ok(resp);
        }
        let api = bigcommerce::parse_api_error(&resp);
        Err(failure::classify_bigcommerce(resp.status, &resp.headers)
            .with_upstream_message(&api.message))
    }

    /// Decodes a BigCommerce body, naming the JSON path on failure.
    pub fn bc_decode<T: DeserializeOwned>(
        &self,
        resp: &HttpResponse,
        what: &str,
    ) -> Result<T, Failure> {
        bigcommerce::decode::<T>(&resp.body)
            .map_err(|e| Failure::unreadable(Service::BigCommerce, &format!("a {what} ({e})")))
    }

    fn vault(&self) -> Vault<'_> {
        Vault {
            keyring: &self.keyring,
        }
    }

    /// A valid QuickBooks access: the one this job obtained less than a minute ago, else the
    /// stored one (or a fresh one, refreshed under the refresh lease).
    pub fn access(&self, host: &mut dyn Host) -> Result<Access, ConnectionError> {
        let now = host.now();
        if let Some((a, at)) = self.access_memo.borrow().as_ref()
            && (0..ACCESS_MEMO_S).contains(&(now - *at).num_seconds())
        {
            return Ok(a.clone());
        }
        let a = connection::access(host, &self.vault(), &self.qbo, false)?;
        *self.access_memo.borrow_mut() = Some((a.clone(), now));
        Ok(a)
    }

    /// Sends a QuickBooks request built for the current token and realm (401 → refresh once).
    pub fn qbo_send(
        &self,
        host: &mut dyn Host,
        build: &dyn Fn(&str, &str, &str) -> HttpRequest,
    ) -> Result<HttpResponse, QboFailure> {
        let api_base = self.qbo.api_base.clone();
        let resp = self
            .call(host, &|realm, token| build(&api_base, realm, token))
            .map_err(|e| match e {
                CallError::Connection(c) if c.needs_reauth() => {
                    QboFailure::from(Failure::needs_reauth(&c.to_string()))
                }
                CallError::Connection(c) => QboFailure::from(connection::connection_failure(&c)),
                CallError::Transport(t) => {
                    QboFailure::from(failure::classify_transport(Service::QuickBooks, &t))
                }
            })?;
        match quickbooks::check_response(&resp) {
            Ok(()) => Ok(resp),
            Err(fault) => {
                let failure =
                    failure::classify_quickbooks(resp.status, fault.code(), &resp.headers)
                        .with_upstream_message(&fault.to_string());
                let mut failure = failure;
                if failure.intuit_tid.is_none() {
                    failure.intuit_tid = fault.intuit_tid.clone();
                }
                Err(QboFailure {
                    failure,
                    fault: Some(fault),
                })
            }
        }
    }

    /// [`connection::call`] with the job's access: one request, and on a 401 one more with
    /// the access that replaces the rejected one.
    fn call(
        &self,
        host: &mut dyn Host,
        build: &dyn Fn(&str, &str) -> HttpRequest,
    ) -> Result<HttpResponse, CallError> {
        let access = self.access(host).map_err(CallError::Connection)?;
        let response = host
            .http(&build(&access.realm_id, access.token.expose()))
            .map_err(CallError::Transport)?;
        if response.status != 401 {
            return Ok(response);
        }
        *self.access_memo.borrow_mut() = None;
        let access =
            connection::access_replacing(host, &self.vault(), &self.qbo, access.token.expose())
                .map_err(CallError::Connection)?;
        let now = host.now();
        *self.access_memo.borrow_mut() = Some((access.clone(), now));
        host.http(&build(&access.realm_id, access.token.expose()))
            .map_err(CallError::Transport)
    }

    /// Runs a query and returns the entities found (possibly none).
    pub fn qbo_query<T: DeserializeOwned>(
        &self,
        host: &mut dyn Host,
        entity: &str,
        statement: &str,
    ) -> Result<Vec<T>, QboFailure> {
        let resp = self.qbo_send(host, &|base, realm, token| {
            quickbooks::query(base, realm, token, statement)
        })?;
        quickbooks::parse_query::<T>(&resp, entity)
            .map(|p| p.entities)
            .map_err(|e| {
                QboFailure::from(Failure::unreadable(
                    Service::QuickBooks,
                    &format!("a query answer ({e})"),
                ))
            })
    }

    /// Creates, sparse-updates or reads one entity and returns QuickBooks' version of it:
    /// the one path for QuickBooks entity calls.
    pub fn qbo_entity(
        &self,
        host: &mut dyn Host,
        entity_path: &str,
        entity: &str,
        call: EntityCall,
    ) -> Result<Value, QboFailure> {
        let resp = self.qbo_send(host, &|base, realm, token| {
            call.request(base, realm, token, entity_path)
        })?;
        entity_of(&resp, entity)
    }
}

impl Upstreams {
    /// Sends one batch of creates (`POST …/batch` with one `requestid`) and gives each item's
    /// outcome by `bId`: its entity, or its fault classified as the same fault of a single write
    /// would be. An item missing from the map has an unknown outcome. The request counts as one
    /// toward the in-flight slot and the second's requests, and as one per operation toward the
    /// per-minute window ([`crate::sync::pace::qbo_operations`]). A failure of the request as a whole (transport,
    /// 5xx, 429, a request fault) is the `Err`: every item's outcome is then unknown.
    pub fn qbo_batch(
        &self,
        host: &mut dyn Host,
        items: &[quickbooks::BatchCreate],
        request_id: &str,
    ) -> Result<HashMap<String, Result<Value, QboFailure>>, QboFailure> {
        let resp = self.qbo_send(host, &|base, realm, token| {
            quickbooks::batch(base, realm, token, items, request_id)
        });
        let resp = resp?;
        let answers = quickbooks::parse_batch(&resp, items).map_err(|fault| {
            let failure = failure::classify_quickbooks(resp.status, fault.code(), &resp.headers)
                .with_upstream_message(&fault.to_string());
            QboFailure {
                failure,
                fault: Some(fault),
            }
        })?;
        Ok(answers
            .into_iter()
            .map(|(bid, a)| {
                let outcome = match a {
                    quickbooks::BatchAnswer::Entity(v) => Ok(v),
                    quickbooks::BatchAnswer::Fault(fault) => {
                        let mut failure =
                            failure::classify_quickbooks(fault.status, fault.code(), &resp.headers)
                                .with_upstream_message(&fault.to_string());
                        if failure.intuit_tid.is_none() {
                            failure.intuit_tid = quickbooks::intuit_tid(&resp);
                        }
                        Err(QboFailure {
                            failure,
                            fault: Some(fault),
                        })
                    }
                };
                (bid, outcome)
            })
            .collect())
    }
}

/// One QuickBooks entity call, for [`Upstreams::qbo_entity`].
#[derive(Debug, Clone, Copy)]
pub enum EntityCall<'a> {
    /// Create with a `requestid` (QuickBooks answers a repeat with the first result).
    Create {
        body: &'a Value,
        request_id: &'a str,
    },
    /// Sparse update (`body` carries `Id`, `SyncToken` and `sparse`).
    Update {
        body: &'a Value,
        request_id: &'a str,
    },
    /// Read one entity by id.
    Read { id: &'a str },
    /// An operation on an existing entity (`void`); `body` carries `Id` and `SyncToken`.
    Operation {
        op: &'a str,
        body: &'a Value,
        request_id: &'a str,
    },
}

impl EntityCall<'_> {
    fn request(&self, base: &str, realm: &str, token: &str, entity_path: &str) -> HttpRequest {
        match *self {
            EntityCall::Create { body, request_id } => {
                quickbooks::create(base, realm, token, entity_path, body, request_id)
            }
            EntityCall::Update { body, request_id } => {
                quickbooks::sparse_update(base, realm, token, entity_path, body, request_id)
            }
            EntityCall::Read { id } => quickbooks::read(base, realm, token, entity_path, id),
            EntityCall::Operation {
                op,
                body,
                request_id,
            } => quickbooks::operation(base, realm, token, entity_path, op, body, request_id),
        }
    }
}

fn entity_of(resp: &HttpResponse, entity: &str) -> Result<Value, QboFailure> {
    quickbooks::parse_entity::<Value>(resp, entity)
        .map_err(|e| QboFailure::from(Failure::unreadable(Service::QuickBooks, &e.to_string())))
}

/// `Id` and `SyncToken` of a QuickBooks entity.
pub fn id_and_token(v: &Value) -> (String, String) {
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("Id"), s("SyncToken"))
}
