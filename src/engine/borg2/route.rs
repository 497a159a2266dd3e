//! Which borgstore operation a request asks for, decided as borgstore 0.7.0's REST server
//! (`server/rest.py`) decides it: the `Accept` check first, then per method the `cmd` query
//! parameter in the server's order, then the name.
//!
//! Pure. Names come from the URL path with its outer slashes stripped and are not
//! percent-decoded; query parameters are form-decoded (`parse_qs`: blank values dropped, the
//! first value of a repeated parameter counts).

use super::head::{Method, RequestHead};

/// The only `Accept` value borgstore's server takes.
pub const ACCEPT: &str = "application/vnd.x.borgstore.rest.v1";

/// One operation on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Create,
    Destroy,
    Mkdir(String),
    Rmdir(String),
    Info(String),
    List(String),
    Load {
        name: String,
        range: Option<String>,
    },
    /// The body is the object; `sha256` is the `X-Content-hash-sha256` to verify.
    Store {
        name: String,
        sha256: Option<String>,
    },
    Delete(String),
    Move {
        current: String,
        new: String,
    },
    Hash {
        name: String,
        algorithm: String,
    },
    /// The body is a JSON list of `[name, offset, size]`.
    Gather,
    Defrag {
        target: Option<String>,
        algorithm: Option<String>,
        namespace: Option<String>,
        levels: usize,
    },
    Quota,
}

/// A request answered without touching the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(400, message)
    }
}

/// The operation `head` asks for.
pub fn route(head: &RequestHead) -> Result<Operation, Refusal> {
    if let Method::Other(method) = &head.method {
        return Err(Refusal::new(
            501,
            format!("Unsupported method ({})", python_repr(method)),
        ));
    }
    if head.accept.as_deref() != Some(ACCEPT) {
        return Err(Refusal::new(
            406,
            "Not Acceptable: unsupported or missing Accept header",
        ));
    }
    let target = Target::parse(&head.target);
    let name = target.name();
    let query = |key: &str| target.query(key);
    match head.method {
        Method::Post => route_post(name, &query, head),
        Method::Delete => match query("cmd").as_deref() {
            Some("rmdir") => Ok(Operation::Rmdir(name)),
            Some("destroy") => Ok(Operation::Destroy),
            _ if name.is_empty() => Err(Refusal::bad_request("Bad Request")),
            _ => Ok(Operation::Delete(name)),
        },
        Method::Head => Ok(Operation::Info(name)),
        Method::Get if target.path.ends_with('/') => Ok(Operation::List(name)),
        Method::Get if name.is_empty() => Err(Refusal::bad_request("Bad Request")),
        Method::Get => Ok(Operation::Load {
            name,
            range: head.range.clone(),
        }),
        Method::Other(_) => Err(Refusal::new(501, "Unsupported method")),
    }
}

fn route_post(
    name: String,
    query: &dyn Fn(&str) -> Option<String>,
    head: &RequestHead,
) -> Result<Operation, Refusal> {
    match query("cmd").as_deref() {
        Some("create") => Ok(Operation::Create),
        Some("move") => match (query("current"), query("new")) {
            (Some(current), Some(new)) => Ok(Operation::Move { current, new }),
            _ => Err(Refusal::bad_request("Missing current or new name for move")),
        },
        Some("mkdir") => Ok(Operation::Mkdir(name)),
        Some("hash") if name.is_empty() => Err(Refusal::bad_request("Missing name for hash")),
        Some("hash") => Ok(Operation::Hash {
            name,
            algorithm: query("algorithm").unwrap_or_else(|| "sha256".to_owned()),
        }),
        Some("quota") => Ok(Operation::Quota),
        Some("gather") => Ok(Operation::Gather),
        Some("defrag") => {
            let target = query("target");
            let algorithm = query("algorithm");
            let levels = match query("levels") {
                None => 0,
                Some(text) => python_levels(&text)?,
            };
            if target.is_none() && algorithm.is_none() {
                return Err(Refusal::bad_request(
                    "Missing target or algorithm for defrag",
                ));
            }
            Ok(Operation::Defrag {
                target,
                algorithm,
                namespace: query("namespace"),
                levels,
            })
        }
        // Any other or no `cmd` with a name is a store.
        _ if !name.is_empty() => Ok(Operation::Store {
            name,
            sha256: head.content_sha256.clone(),
        }),
        _ => Err(Refusal::bad_request("Bad Request")),
    }
}

/// `int(levels)`; nesting deeper than the name is long makes no sense, so it is bounded.
fn python_levels(text: &str) -> Result<usize, Refusal> {
    let invalid = || {
        Refusal::bad_request(format!(
            "invalid literal for int() with base 10: {}",
            python_repr(text)
        ))
    };
    let trimmed = text.trim();
    let value: i64 = trimmed.parse().map_err(|_| invalid())?;
    // nest() does nothing for levels <= 0.
    Ok(usize::try_from(value.clamp(0, 64)).unwrap_or(0))
}

/// Python's `repr()` of a str, near enough for messages.
fn python_repr(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '\'' => vec!['\\', '\''],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => format!("\\x{:02x}", u32::from(c) & 0xff).chars().collect(),
            c => vec![c],
        })
        .collect();
    format!("'{escaped}'")
}

/// A request target split as Python's `http.server` and `urlsplit` split it.
struct Target<'a> {
    path: &'a str,
    query: &'a str,
}

impl<'a> Target<'a> {
    fn parse(target: &'a str) -> Target<'a> {
        // http.server collapses a leading `//` (the client sends `GET //` for the root
        // listing); an absolute-form target loses its scheme and authority.
        let mut rest = target;
        for scheme in ["http://", "https://"] {
            if let Some(after) = rest.strip_prefix(scheme) {
                rest = after.find('/').map_or("", |slash| &after[slash..]);
            }
        }
        if rest.starts_with("//") {
            rest = &rest[rest.len() - rest.trim_start_matches('/').len() - 1..];
        }
        let without_fragment = rest.split('#').next().unwrap_or("");
        let (path, query) = without_fragment
            .split_once('?')
            .unwrap_or((without_fragment, ""));
        Target { path, query }
    }

    /// `urlsplit(path).path.strip("/")`.
    fn name(&self) -> String {
        self.path.trim_matches('/').to_owned()
    }

    /// The first non-blank value of `key`, form-decoded.
    fn query(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(name, value)| name == key && !value.is_empty())
            .map(|(_, value)| value.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method, target: &str) -> RequestHead {
        RequestHead {
            method,
            target: target.to_owned(),
            accept: Some(ACCEPT.to_owned()),
            range: None,
            content_sha256: None,
            body_length: 0,
        }
    }

    fn op(method: Method, target: &str) -> Result<Operation, Refusal> {
        route(&head(method, target))
    }

    fn s(text: &str) -> String {
        text.to_owned()
    }

    #[test]
    fn borgstore_requests_route_to_their_operations() {
        use Method::*;
        use Operation as O;
        let table: &[(Method, &str, O)] = &[
            (Post, "/?cmd=create", O::Create),
            (Delete, "/?cmd=destroy", O::Destroy),
            (Post, "/packs/00?cmd=mkdir", O::Mkdir(s("packs/00"))),
            (Post, "/?cmd=mkdir", O::Mkdir(s(""))),
            (Delete, "/packs/00?cmd=rmdir", O::Rmdir(s("packs/00"))),
            (Head, "/config", O::Info(s("config"))),
            (Head, "/", O::Info(s(""))),
            (Get, "//", O::List(s(""))),
            (Get, "/", O::List(s(""))),
            (Get, "/packs/", O::List(s("packs"))),
            (Get, "///packs//", O::List(s("packs"))),
            (
                Get,
                "/config/config",
                O::Load {
                    name: s("config/config"),
                    range: None,
                },
            ),
            (
                Post,
                "/config/config",
                O::Store {
                    name: s("config/config"),
                    sha256: None,
                },
            ),
            (
                Post,
                "/config/config?cmd=frobnicate",
                O::Store {
                    name: s("config/config"),
                    sha256: None,
                },
            ),
            (
                Post,
                "/config/config?cmd=",
                O::Store {
                    name: s("config/config"),
                    sha256: None,
                },
            ),
            (Delete, "/archives/11", O::Delete(s("archives/11"))),
            (
                Post,
                "/?cmd=move&current=archives%2F11&new=archives%2F11.del",
                O::Move {
                    current: s("archives/11"),
                    new: s("archives/11.del"),
                },
            ),
            (
                Post,
                "/packs/ab/ab00?cmd=hash&algorithm=blake3",
                O::Hash {
                    name: s("packs/ab/ab00"),
                    algorithm: s("blake3"),
                },
            ),
            (
                Post,
                "/packs/ab/ab00?cmd=hash",
                O::Hash {
                    name: s("packs/ab/ab00"),
                    algorithm: s("sha256"),
                },
            ),
            (Post, "/?cmd=quota", O::Quota),
            (Post, "/?cmd=gather", O::Gather),
            (
                Post,
                "/?cmd=defrag&algorithm=blake3&namespace=packs&levels=1",
                O::Defrag {
                    target: None,
                    algorithm: Some(s("blake3")),
                    namespace: Some(s("packs")),
                    levels: 1,
                },
            ),
            (
                Post,
                "/?cmd=defrag&target=packs%2Fx",
                O::Defrag {
                    target: Some(s("packs/x")),
                    algorithm: None,
                    namespace: None,
                    levels: 0,
                },
            ),
            (
                Get,
                "/config/config#frag?x",
                O::Load {
                    name: s("config/config"),
                    range: None,
                },
            ),
            (
                Get,
                "http://stdio-backend/config/config",
                O::Load {
                    name: s("config/config"),
                    range: None,
                },
            ),
            (
                Get,
                "/a%2Fb",
                O::Load {
                    name: s("a%2Fb"),
                    range: None,
                },
            ),
            (Post, "/?cmd=create&cmd=destroy", O::Create),
        ];
        for (method, target, expected) in table {
            assert_eq!(
                op(method.clone(), target),
                Ok(expected.clone()),
                "{method:?} {target}"
            );
        }
    }

    #[test]
    fn requests_borgstore_refuses_are_refused_with_its_words() {
        use Method::*;
        let table: &[(Method, &str, u16, &str)] = &[
            (Post, "/", 400, "Bad Request"),
            (
                Post,
                "/?cmd=move&current=a",
                400,
                "Missing current or new name for move",
            ),
            (
                Post,
                "/?cmd=move&current=a&new=",
                400,
                "Missing current or new name for move",
            ),
            (Post, "/?cmd=hash", 400, "Missing name for hash"),
            (
                Post,
                "/?cmd=defrag",
                400,
                "Missing target or algorithm for defrag",
            ),
            (
                Post,
                "/?cmd=defrag&algorithm=sha256&levels=x",
                400,
                "invalid literal for int() with base 10: 'x'",
            ),
            (Delete, "/", 400, "Bad Request"),
            (Get, "?x=1", 400, "Bad Request"),
            (Other(s("PUT")), "/x", 501, "Unsupported method ('PUT')"),
        ];
        for (method, target, status, message) in table {
            assert_eq!(
                op(method.clone(), target),
                Err(Refusal::new(*status, *message)),
                "{method:?} {target}"
            );
        }
    }

    #[test]
    fn only_borgstores_accept_value_is_served() {
        for accept in [
            None,
            Some("*/*"),
            Some("application/vnd.x.borgstore.rest.v2"),
        ] {
            let mut request = head(Method::Get, "/config/config");
            request.accept = accept.map(str::to_owned);
            assert_eq!(route(&request).unwrap_err().status, 406, "{accept:?}");
        }
    }

    #[test]
    fn the_hash_header_travels_with_a_store() {
        let mut request = head(Method::Post, "/config/config");
        request.content_sha256 = Some(s("ab"));
        assert_eq!(
            route(&request),
            Ok(Operation::Store {
                name: s("config/config"),
                sha256: Some(s("ab"))
            })
        );
    }
}
