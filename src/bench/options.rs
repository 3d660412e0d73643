//! Command-line options of `quorumkv bench`, parsed Go-style like the node's flags.

use std::time::Duration;

/// What the benchmark does; see [`super::HELP`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// One put per request.
    Put,
    /// One single-key range per request.
    Range,
    /// A range then a Txn comparing the key's mod_revision.
    TxnCas,
    /// Watch streams on a prefix, checked against the puts of a writer.
    Watch,
}

impl Workload {
    /// The workload's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::TxnCas => "txn-cas",
            Workload::Watch => "watch",
        }
    }

    /// The first byte of the workload's keys: the watch workload has a prefix of its own,
    /// so leftovers of the other workloads in the same cluster never reach its watchers.
    pub fn key_prefix(self) -> u8 {
        match self {
            Workload::Watch => b'w',
            _ => b'k',
        }
    }
}

/// Read consistency of range requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable: the server confirms its leadership (etcd's default).
    Linearizable,
    /// Serializable: served from the member's local state.
    Serializable,
}

/// Parsed options of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The workload.
    pub workload: Workload,
    /// `host:port` (or `http://host:port`) of each member to connect to.
    pub endpoints: Vec<String>,
    /// Concurrent requesters.
    pub clients: usize,
    /// gRPC connections; client `i` uses connection `i % conns`.
    pub conns: usize,
    /// Requests in the measured phase.
    pub total: u64,
    /// Key length in bytes (a prefix byte and decimal digits).
    pub key_size: usize,
    /// Value length in bytes.
    pub val_size: usize,
    /// Distinct keys the requests draw from.
    pub key_space_size: u64,
    /// Walk the key space in order rather than at random.
    pub sequential_keys: bool,
    /// Consistency of the reads of `range` and `txn-cas`.
    pub consistency: Consistency,
    /// Watch streams of the watch workload.
    pub watchers: usize,
    /// Deadline of each unary request.
    pub timeout: Duration,
    /// Print the report as JSON.
    pub json: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workload: Workload::Put,
            endpoints: vec!["127.0.0.1:2379".to_string()],
            clients: 1,
            conns: 1,
            total: 10_000,
            key_size: 8,
            val_size: 256,
            key_space_size: 10_000,
            sequential_keys: false,
            consistency: Consistency::Linearizable,
            watchers: 10,
            timeout: Duration::from_secs(10),
            json: false,
        }
    }
}

fn value<'a>(
    flag: &str,
    inline: Option<&'a str>,
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<&'a str, String> {
    match inline {
        Some(v) => Ok(v),
        None => rest.next().map(String::as_str).ok_or_else(|| format!("flag --{flag} needs a value")),
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("flag --{flag}: {v:?} is not a number"))
}

fn positive<T: std::str::FromStr + Default + PartialOrd>(flag: &str, v: &str) -> Result<T, String> {
    let n: T = number(flag, v)?;
    if n <= T::default() {
        return Err(format!("flag --{flag} must be at least 1"));
    }
    Ok(n)
}

fn boolean(flag: &str, inline: Option<&str>) -> Result<bool, String> {
    match inline {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(format!("flag --{flag}: {v:?} is not true or false")),
    }
}

impl Options {
    /// Parses the words after `bench`. `Ok(None)` means help was asked for.
    pub fn parse(args: &[String]) -> Result<Option<Options>, String> {
        let mut o = Options::default();
        let mut workload = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                let w = match arg.as_str() {
                    "put" => Workload::Put,
                    "range" => Workload::Range,
                    "txn-cas" => Workload::TxnCas,
                    "watch" => Workload::Watch,
                    other => return Err(format!("unknown workload {other:?} (put, range, txn-cas or watch)")),
                };
                if workload.replace(w).is_some() {
                    return Err("more than one workload given".to_string());
                }
                continue;
            };
            let (flag, inline) = match stripped.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (stripped, None),
            };
            match flag {
                "h" | "help" => return Ok(None),
                "endpoints" => {
                    let list = value(flag, inline, &mut it)?;
                    o.endpoints = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                    if o.endpoints.is_empty() {
                        return Err("flag --endpoints: no endpoint given".to_string());
                    }
                }
                "clients" => o.clients = positive(flag, value(flag, inline, &mut it)?)?,
                "conns" => o.conns = positive(flag, value(flag, inline, &mut it)?)?,
                "total" => o.total = positive(flag, value(flag, inline, &mut it)?)?,
                "key-size" => o.key_size = number(flag, value(flag, inline, &mut it)?)?,
                "val-size" => o.val_size = number(flag, value(flag, inline, &mut it)?)?,
                "key-space-size" => o.key_space_size = positive(flag, value(flag, inline, &mut it)?)?,
                "sequential-keys" => o.sequential_keys = boolean(flag, inline)?,
                "consistency" => {
                    o.consistency = match value(flag, inline, &mut it)? {
                        "l" | "linearizable" => Consistency::Linearizable,
                        "s" | "serializable" => Consistency::Serializable,
                        v => return Err(format!("flag --consistency: {v:?} is not l or s")),
                    }
                }
                "watchers" => o.watchers = positive(flag, value(flag, inline, &mut it)?)?,
                "timeout" => {
                    let v = value(flag, inline, &mut it)?;
                    let secs: f64 = number(flag, v)?;
                    if !(secs > 0.0 && secs.is_finite()) {
                        return Err(format!("flag --timeout: {v:?} is not a positive number of seconds"));
                    }
                    o.timeout = Duration::from_secs_f64(secs);
                }
                "json" => o.json = boolean(flag, inline)?,
                other => return Err(format!("unknown flag --{other}")),
            }
        }
        o.workload = workload.ok_or("no workload given (put, range, txn-cas or watch)")?;
        if o.key_size < 2 {
            return Err("flag --key-size must be at least 2 (a prefix byte and a digit)".to_string());
        }
        if o.key_space_size > o.key_capacity() {
            return Err(format!(
                "--key-space-size {} does not fit in {}-byte keys (at most {})",
                o.key_space_size,
                o.key_size,
                o.key_capacity()
            ));
        }
        Ok(Some(o))
    }

    /// How many distinct keys `key_size` bytes hold: 10^(key_size - 1), saturating.
    pub fn key_capacity(&self) -> u64 {
        10u64.checked_pow((self.key_size - 1) as u32).unwrap_or(u64::MAX)
    }

    /// The key of index `i` (< `key_space_size`): the workload's prefix byte, then `i` as
    /// `key_size - 1` zero-padded decimal digits.
    pub fn key(&self, i: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.key_size);
        k.push(self.workload.key_prefix());
        k.extend_from_slice(format!("{i:0width$}", width = self.key_size - 1).as_bytes());
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<Options>, String> {
        Options::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn defaults() {
        let o = parse("put").unwrap().unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.endpoints, vec!["127.0.0.1:2379"]);
    }

    #[test]
    fn flags_in_all_spellings() {
        let o = parse(
            "--endpoints=127.0.0.1:1,127.0.0.1:2 -clients 100 --conns=10 --total 500 --key-size 8 \
             --val-size=256 -key-space-size 1000 --sequential-keys --consistency s --watchers=3 --timeout 2.5 \
             --json range",
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.workload, Workload::Range);
        assert_eq!(o.endpoints, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!((o.clients, o.conns, o.total), (100, 10, 500));
        assert_eq!((o.key_size, o.val_size, o.key_space_size), (8, 256, 1000));
        assert!(o.sequential_keys && o.json);
        assert_eq!(o.consistency, Consistency::Serializable);
        assert_eq!(o.watchers, 3);
        assert_eq!(o.timeout, Duration::from_millis(2500));
        // The workload may come first, and booleans take =false.
        let o = parse("txn-cas --json=false --consistency=l").unwrap().unwrap();
        assert_eq!(o.workload, Workload::TxnCas);
        assert!(!o.json);
        assert_eq!(o.consistency, Consistency::Linearizable);
        assert_eq!(parse("watch").unwrap().unwrap().workload, Workload::Watch);
    }

    #[test]
    fn help_and_errors() {
        assert!(parse("--help").unwrap().is_none());
        assert!(parse("put -h").unwrap().is_none());
        for bad in [
            "",
            "get",
            "put range",
            "put --bogus 1",
            "put --clients",
            "put --clients 0",
            "put --clients x",
            "put --consistency q",
            "put --key-size 1",
            "put --key-size 3 --key-space-size 101",
            "put --endpoints ,",
            "put --timeout -1",
            "put --json=maybe",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        // Exactly 10^(key_size-1) keys fit.
        assert!(parse("put --key-size 3 --key-space-size 100").unwrap().is_some());
    }

    #[test]
    fn keys() {
        let o = parse("put --key-size 8").unwrap().unwrap();
        assert_eq!(o.key(42), b"k0000042");
        assert_eq!(o.key(9_999_999), b"k9999999");
        let w = parse("watch --key-size 4 --key-space-size 1000").unwrap().unwrap();
        assert_eq!(w.key(7), b"w007");
        assert_eq!(parse("put --key-size 40").unwrap().unwrap().key_capacity(), u64::MAX);
    }
}
