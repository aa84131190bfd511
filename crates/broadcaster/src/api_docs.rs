//! The OpenAPI document broadcaster serves at `/openapi.json`: the annotated paths, plus what
//! holds for every endpoint (the error envelope, body limits, content types), written once here
//! instead of on each path.

use utoipa::OpenApi as _;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

/// What every endpoint shares, in the document's description (Markdown).
const API_GUIDE: &str = r#"Connect WhatsApp accounts; send, track and receive messages.

## Errors

Every error answers `{"error": {"code": "...", "message": "..."}}`. `code` is stable and
machine-readable; `message` is for people.

| status | codes | meaning |
| --- | --- | --- |
| 400 | `invalid_body`, `malformed_json`, `invalid_phone`, ... | the request is malformed or breaks a rule `code` names |
| 401 / 403 | `unauthorized` / `forbidden` | missing or invalid API key / the key lacks the permission |
| 403 | `not_group_admin`, `not_allowed_in_group` | WhatsApp refused the account a group change: admins only, or the account is not in the group |
| 404 | `not_found` | no such resource (in this tenant; for groups: WhatsApp knows no such group) |
| 409 | `account_not_active`, `account_not_connected`, `description_changed`, ... | the account is not in a state that allows it; a group description changed meanwhile |
| 413 | `payload_too_large`, `media_too_large` | the body (or a file fetched for it) is over its limit |
| 415 | `unsupported_media_type` | the body is not `application/json` (or, where allowed, `multipart/form-data`) |
| 422 | `not_on_whatsapp`, `reachout_restricted`, `url_refused`, `invalid_invite_link`, `invite_link_revoked`, `proxy_scheme_unsupported` | well-formed, refused on its meaning (see below) |
| 429 | `rate_limited`, `daily_limit_reached`, `new_contact_limit_reached` | slow down; `Retry-After` says for how long |
| 503 | `unavailable` | a dependency (database, WhatsApp) is unavailable; retry later |

**Body limits.** Every endpoint has one: 1 MiB by default (`max_body_bytes`); message sends,
bulk sends, templates and direct broadcasts allow a media file (`media_max_bytes`, plus a
third for base64); `POST /api/v1/contacts/import` 12 MiB; campaigns with an audience CSV the
import limit plus a media file. A body that declares a longer `Content-Length` is refused with
413 before it is read; a chunked body once it crosses the limit.

**Content types.** Endpoints with a body read `application/json`; sending a message and a
template's media also take `multipart/form-data`. Anything else, or no `Content-Type`, is 415.

**Numbers not on WhatsApp.** Sending to a number without a WhatsApp account answers 422
`not_on_whatsapp`, and nothing is kept: no message row, no event, nothing counted against the
daily limit (so a client that repeats the request does not pile up failed rows; it should not
repeat it). Bulk sends, already accepted (202) when the number is tried, record that message as
`failed` with the reason; campaigns that check numbers skip such recipients (`skipped`,
`not_on_whatsapp`), and one found at send time fails with the reason. `POST /api/v1/accounts/{id}/check-numbers` answers per number:
an entry that is not a phone number carries its own `error` and the others are still checked.

**First contacts WhatsApp restricts.** When WhatsApp refuses a message as a first contact the
account may not make now (error 463), the send answers 422 `reachout_restricted` with WhatsApp's
text. Unlike `not_on_whatsapp` the attempt reached WhatsApp, so its row is kept as `failed` (reason
starting `restricted:`). Nothing retries it, neither bulk sends nor campaigns (each retry would be
another reach-out); the campaign recipient fails with that reason.

**New contacts a day.** Besides `daily_limit`, each account has `new_contact_limit`: messages
to people it never exchanged a message with (default 50 a day, in its time zone). A single send
over it answers 429 `new_contact_limit_reached` (`X-RateLimit-Reset`); messages to people it
already chatted with still go. Campaigns hold such recipients (`pending`, reason
`new_contact_limit`, `held_until` the reset) and send them after the reset.

**Reach-out time-lock.** When WhatsApp time-locks an account's first contacts, the
`reachout_timelock` event (webhook and live, `data`: `Timelock`) says until when; the
account's `reachout_timelock` shows it, its campaigns pause with the reason
`reachout_timelock` and `paused_until`, its bulk messages move back by the lock's length, and
both resume by themselves when the lock ends or WhatsApp lifts it.

**Per-account proxy.** An account's `proxy` (set at creation or with `PATCH`) sends its
connections to WhatsApp through an HTTP CONNECT proxy, `http://[user:password@]host[:port]`;
SOCKS and other schemes answer 422 `proxy_scheme_unsupported`, a malformed URL 400
`invalid_proxy` (the message never repeats the URL). It takes effect at the next connection. The
password is stored but never returned nor logged: answers show `http://user:***@host:port`. A
proxy that cannot be reached or refuses the tunnel leaves the account `reconnecting` with the
proxy's error as its `state_reason`.

**Chats from the phone.** A linked account's chats carry what its devices share through app
state: `archived`, `pinned`, `muted_until` and `marked_read` (set on the phone or here with
`PATCH /api/v1/accounts/{id}/chats/{chat}`, which the phone then shows), and the `name` the
phone's address book (else the contact's push name) gives a direct chat. Each change is a
`chat_update` event (webhook and live, `data`: `ChatSettings`). Contacts list those names per
account in `whatsapp_names`; history gives incoming messages a `sender_name`.

## Webhook signatures

Every delivery is a `POST` of the event envelope (`EventEnvelope`) with the headers
`X-Broadcaster-Timestamp` (Unix seconds), `X-Broadcaster-Signature` (`v1=` + hex
HMAC-SHA256 keyed with the webhook's `whsec_...` secret, its UTF-8 bytes, over
`<timestamp>.<raw body>`) and `X-Broadcaster-Event-Id` (the envelope's `id`, the same on every
retry: drop duplicates). Verify over the raw bytes before parsing, compare in constant time,
and refuse timestamps more than five minutes off. Python:

```python
import hmac, hashlib, time
def verify(secret, headers, body: bytes, tolerance_s=300):
    ts, sig = headers["X-Broadcaster-Timestamp"], headers["X-Broadcaster-Signature"]
    if abs(time.time() - int(ts)) > tolerance_s:
        return False
    want = "v1=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig)
```

Example: secret `whsec_test`, timestamp `1700000000`, body `{"id":"evt_1"}` give
`v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925`.
"#;

/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

/// Swagger UI at [`DOCS_PATH`], rendering `/openapi.json`. Its files are in the binary: the page
/// works without internet access.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    // No online validator badge: the page makes no request outside this server.
    let config =
        utoipa_swagger_ui::Config::from("/openapi.json").persist_authorization(true).validator_url("none");
    utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).config(config).into()
}

/// The complete document: [`ApiDoc`], the campaign and group APIs, with the shared error
/// responses on every path.
pub fn openapi() -> OpenApi {
    let mut doc = ApiDoc::openapi()
        .merge_from(crate::campaigns::CampaignsApi::openapi())
        .merge_from(crate::groups::http::GroupsApi::openapi());
    doc.info.description = Some(API_GUIDE.to_owned());
    add_shared_errors(&mut doc);
    doc
}

/// 413 and 415 on every operation that takes a body, unless the path documents them itself.
fn add_shared_errors(doc: &mut OpenApi) {
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten() {
            if op.request_body.is_none() {
                continue;
            }
            let responses = &mut op.responses.responses;
            responses.entry("413".into()).or_insert_with(|| {
                error("`payload_too_large`: the body is over this endpoint's limit").into()
            });
            responses.entry("415".into()).or_insert_with(|| {
                error("`unsupported_media_type`: the body is not of a type this endpoint reads").into()
            });
        }
    }
}

/// The annotated paths and shared schemas (the campaign API is merged in [`openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Broadcaster API", description = "Connect WhatsApp accounts; send, track and receive messages."),
    paths(
        crate::ops::healthz, crate::ops::readyz,
        crate::tenants::create_tenant, crate::tenants::list_tenants,
        crate::tenants::create_key, crate::tenants::list_keys, crate::tenants::revoke_key,
        crate::accounts::create, crate::accounts::list, crate::accounts::get, crate::accounts::update, crate::accounts::delete,
        crate::accounts::activity, crate::accounts::connect, crate::accounts::disconnect, crate::accounts::logout,
        crate::webhooks::create, crate::webhooks::list, crate::webhooks::update, crate::webhooks::delete, crate::webhooks::deliveries, crate::webhooks::replay,
        crate::messages::send, crate::messages::history, crate::messages::get_message, crate::messages::download_media,
        crate::messages::check_numbers,
        crate::messages::actions::react, crate::messages::actions::edit, crate::messages::actions::revoke, crate::messages::actions::read,
        crate::messages::actions::set_chat_state,
        crate::bulk::bulk_send,
        crate::ops::metrics, crate::accounts::qr, crate::live_ws::events_ws,
        crate::emulator_api::scan, crate::emulator_api::enter_code, crate::emulator_api::create_phone, crate::emulator_api::phone_send,
        crate::emulator_api::phone_inbox, crate::emulator_api::phone_read,
        crate::compat::start_session, crate::compat::sessions, crate::compat::session, crate::compat::session_qr, crate::compat::send_message,
        crate::compat::delete_session,
        crate::chats::http::list, crate::chats::http::get, crate::chats::http::update,
    ),
    components(schemas(
        crate::outbox::EventEnvelope, crate::live::LiveEvent,
        crate::webhooks::AutoReplyBody, crate::webhooks::AutoReply,
        crate::messages::updates::MessageUpdateEvent, crate::accounts::timelock::Timelock,
        crate::messages::polls::PollVoteEvent, crate::chats::settings::ChatSettings,
    )),
    modifiers(&SecurityAddon)
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "x_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_with_a_body_documents_413_and_415() {
        let doc = openapi();
        let mut with_body = 0;
        for (path, item) in &doc.paths.paths {
            for op in [&item.post, &item.put, &item.patch].into_iter().flatten() {
                if op.request_body.is_some() {
                    with_body += 1;
                    for status in ["413", "415"] {
                        assert!(op.responses.responses.contains_key(status), "{path} lacks {status}");
                    }
                }
            }
        }
        assert!(with_body > 20, "{with_body}");
        let send = doc.paths.paths["/api/v1/accounts/{id}/messages"].post.as_ref().unwrap();
        assert!(send.responses.responses.contains_key("422"));
    }

    #[test]
    fn the_documented_webhook_signature_is_the_one_the_server_computes() {
        let example = crate::webhooks::sign("whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#);
        assert!(API_GUIDE.contains(&example), "{example}");
        let readme = include_str!("../README.md");
        assert!(readme.contains(&example) && readme.contains("X-Broadcaster-Signature"));
    }
}
