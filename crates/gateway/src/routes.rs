//! The routing table: path prefixes (whole segments, longest first) to upstreams, compiled from
//! config and swapped atomically on reload. Upstreams whose config did not change keep their
//! breakers across a reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::config::{EdgeConfig, RoutesConfig};
use crate::upstream::Upstream;

/// Paths the gateway answers itself.
pub const RESERVED: &[&str] = &[
    "/health",
    "/ready",
    "/metrics",
    "/ops",
    "/docs",
    "/openapi.json",
];

/// Whether `path` is one of the gateway's own.
pub fn is_reserved(path: &str) -> bool {
    RESERVED.iter().any(|reserved| {
        path.strip_prefix(reserved)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

pub struct Route {
    pub prefix: String,
    pub upstream: Arc<Upstream>,
    pub public: bool,
    methods: Vec<Method>,
    pub allow_header: String,
    strip_prefix: bool,
    rewrite: Option<String>,
    pub timeout: Duration,
    pub max_body: u64,
}

impl Route {
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    /// The path the upstream sees (before the instance's base path).
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        if !self.strip_prefix && self.rewrite.is_none() {
            return Cow::Borrowed(path);
        }
        let rest = path.get(self.prefix.len()..).unwrap_or("");
        let base = self.rewrite.as_deref().unwrap_or("").trim_end_matches('/');
        let joined = match (base.is_empty(), rest.is_empty()) {
            (true, true) => "/".to_owned(),
            (_, true) => base.to_owned(),
            _ if rest.starts_with('/') => format!("{base}{rest}"),
            _ => format!("{base}/{rest}"),
        };
        Cow::Owned(joined)
    }
}

/// Compiled routes, longest prefix first.
#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    upstreams: Vec<Arc<Upstream>>,
}

impl RouteTable {
    pub fn compile(
        config: &RoutesConfig,
        edge: &EdgeConfig,
        workers: usize,
        previous: Option<&RouteTable>,
    ) -> Result<Self, String> {
        let mut upstreams: HashMap<&str, Arc<Upstream>> = HashMap::new();
        for (name, upstream) in &config.upstreams {
            let kept = previous.and_then(|table| {
                table
                    .upstreams
                    .iter()
                    .find(|u| u.name == *name && u.config == *upstream)
                    .cloned()
            });
            let upstream = match kept {
                Some(kept) => kept,
                None => Arc::new(Upstream::new(name, upstream, workers)?),
            };
            upstreams.insert(name.as_str(), upstream);
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let prefix = route.prefix.trim_end_matches('/').to_owned();
            if !route.prefix.starts_with('/') {
                return Err(format!(
                    "route `{}`: a prefix starts with `/`",
                    route.prefix
                ));
            }
            if let Some(reserved) = RESERVED.iter().find(|r| segment_match(&prefix, r)) {
                return Err(format!(
                    "route `{}`: `{reserved}` is the gateway's own",
                    route.prefix
                ));
            }
            if routes.iter().any(|r: &Route| r.prefix == prefix) {
                return Err(format!("route `{}` is listed twice", route.prefix));
            }
            let upstream = upstreams
                .get(route.upstream.as_str())
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "route `{}`: no upstream named `{}`",
                        route.prefix, route.upstream
                    )
                })?;
            let methods = route
                .methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| format!("route `{}`: invalid method `{m}`", route.prefix))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let allow_header = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            routes.push(Route {
                prefix,
                public: route.public,
                methods,
                allow_header,
                strip_prefix: route.strip_prefix,
                rewrite: route.rewrite.clone(),
                timeout: route
                    .timeout_ms
                    .map_or(upstream.timeout, Duration::from_millis),
                max_body: route.max_body_bytes.unwrap_or(edge.max_body_bytes),
                upstream,
            });
        }
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        let mut upstreams: Vec<Arc<Upstream>> = upstreams.into_values().collect();
        upstreams.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
            upstreams,
        })
    }

    /// The route of `path`: the longest prefix that matches on whole segments.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| segment_match(path, &r.prefix))
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// `path` is `prefix` or continues it with a new segment (`""` is the root and matches all).
fn segment_match(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A path with `.` or `..` segments (plain or percent-encoded), or an encoded `/`, could reach
/// past its route once an upstream normalizes it: refused before routing. No allocation: this
/// runs on every request.
pub fn has_dot_segments(path: &str) -> bool {
    let bytes = path.as_bytes();
    if !bytes.iter().any(|b| *b == b'.' || *b == b'%') {
        return false;
    }
    let encoded_slash = bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'));
    encoded_slash || bytes.split(|b| *b == b'/').any(is_dot_segment)
}

/// `.` or `..`, each dot possibly written `%2e`.
fn is_dot_segment(segment: &[u8]) -> bool {
    let (mut dots, mut i) = (0, 0);
    while i < segment.len() {
        if segment[i] == b'.' {
            i += 1;
        } else if segment.len() - i >= 3
            && segment[i] == b'%'
            && segment[i + 1] == b'2'
            && segment[i + 2].eq_ignore_ascii_case(&b'e')
        {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteConfig, UpstreamConfig};

    fn route(prefix: &str, upstream: &str) -> RouteConfig {
        RouteConfig::new(prefix, upstream)
    }

    fn table(routes: Vec<RouteConfig>) -> Result<RouteTable, String> {
        let upstream = UpstreamConfig {
            instances: vec!["http://127.0.0.1:1".into()],
            ..UpstreamConfig::default()
        };
        let config = RoutesConfig {
            routes,
            upstreams: [
                ("a".to_owned(), upstream.clone()),
                ("b".to_owned(), upstream),
            ]
            .into(),
        };
        RouteTable::compile(&config, &EdgeConfig::default(), 1, None)
    }

    #[test]
    fn longest_prefix_on_whole_segments() -> Result<(), String> {
        let table = table(vec![route("/api", "a"), route("/api/citizens", "b")])?;
        let found = |path: &str| table.find(path).map(|r| r.upstream.name.clone());
        assert_eq!(found("/api/citizens/7"), Some("b".into()));
        assert_eq!(found("/api/citizens"), Some("b".into()));
        assert_eq!(found("/api/citizensx"), Some("a".into()));
        assert_eq!(found("/api"), Some("a".into()));
        assert_eq!(found("/apix"), None);
        assert_eq!(found("/other"), None);
        Ok(())
    }

    #[test]
    fn strip_and_rewrite() -> Result<(), String> {
        let mut strip = route("/api/citizens", "a");
        strip.strip_prefix = true;
        let mut rewrite = route("/v1", "b");
        rewrite.rewrite = Some("/internal/".into());
        let table = table(vec![strip, rewrite])?;
        let path = |p: &str| table.find(p).map(|r| r.upstream_path(p).into_owned());
        assert_eq!(path("/api/citizens/7"), Some("/7".into()));
        assert_eq!(path("/api/citizens"), Some("/".into()));
        assert_eq!(path("/v1/docs/3"), Some("/internal/docs/3".into()));
        assert_eq!(path("/v1"), Some("/internal".into()));
        Ok(())
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let error = |routes| table(routes).err().unwrap_or_default();
        assert!(error(vec![route("/x", "missing")]).contains("no upstream named `missing`"));
        assert!(error(vec![route("/ops/x", "a")]).contains("gateway's own"));
        assert!(error(vec![route("x", "a")]).contains("starts with `/`"));
        assert!(error(vec![route("/x", "a"), route("/x/", "b")]).contains("twice"));
        let mut bad = route("/x", "a");
        bad.methods = vec!["GE T".into()];
        assert!(error(vec![bad]).contains("invalid method"));
    }

    #[test]
    fn dot_segments_are_spotted() {
        assert!(has_dot_segments("/api/citizens/../admin"));
        assert!(has_dot_segments("/api/%2E%2e/admin"));
        assert!(has_dot_segments("/api/./x"));
        assert!(has_dot_segments("/api/a%2Fb"));
        assert!(has_dot_segments("/api/.%2E"));
        assert!(!has_dot_segments("/api/citizens/1.2/doc..pdf"));
        assert!(!has_dot_segments("/api/.../x"));
        assert!(!has_dot_segments("/api/%41"));
    }
}
