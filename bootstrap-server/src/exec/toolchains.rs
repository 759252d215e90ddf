//! The languages the local backend knows: how to find each toolchain, read its version,
//! compile and run a program; and Piston's names and aliases for them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::types::Runtime;

/// Where toolchains are looked for: the directories the sandbox shows (`/usr` is bound
/// read-only; a toolchain under `/root` or `/home` would not be visible inside).
const BIN_DIRS: [&str; 3] = ["/usr/local/bin", "/usr/bin", "/bin"];

/// How a language compiles and runs.
#[derive(Debug)]
pub(crate) struct Language {
    pub(crate) language: &'static str,
    pub(crate) aliases: &'static [&'static str],
    pub(crate) runtime: Option<&'static str>,
    /// Candidate binaries, first found wins.
    binaries: &'static [&'static str],
    /// Arguments that print the version.
    version_args: &'static [&'static str],
    /// The entry file's name when the request gives none.
    pub(crate) default_file: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `binary entry args...`
    Interpreted,
    /// Node: V8's heap capped to the memory limit.
    Node,
    /// Java's single-file source launcher, heap capped.
    Java,
    /// `binary <flags> -o a.out sources...`, then `./a.out args...`; the compiler's address
    /// space allowance beyond the memory limit (rustc maps its large rlibs).
    Compiled(&'static [&'static str], u64),
    /// `go build -o a.out sources`, then `./a.out`.
    Go,
}

pub(crate) const LANGUAGES: &[Language] = &[
    Language {
        language: "python",
        aliases: &["py", "py3", "python3"],
        runtime: None,
        binaries: &["python3"],
        version_args: &["--version"],
        default_file: "main.py",
        kind: Kind::Interpreted,
    },
    Language {
        language: "javascript",
        aliases: &["node-javascript", "node-js", "js", "node"],
        runtime: Some("node"),
        binaries: &["node", "nodejs"],
        version_args: &["--version"],
        default_file: "main.js",
        kind: Kind::Node,
    },
    Language {
        language: "bash",
        aliases: &["sh"],
        runtime: None,
        binaries: &["bash"],
        version_args: &["--version"],
        default_file: "main.sh",
        kind: Kind::Interpreted,
    },
    Language {
        language: "c",
        aliases: &["gcc"],
        runtime: Some("gcc"),
        binaries: &["gcc"],
        version_args: &["-dumpfullversion"],
        default_file: "main.c",
        kind: Kind::Compiled(&["-O2", "-pipe", "-lm"], 0),
    },
    Language {
        language: "c++",
        aliases: &["cpp", "g++"],
        runtime: Some("gcc"),
        binaries: &["g++"],
        version_args: &["-dumpfullversion"],
        default_file: "main.cpp",
        kind: Kind::Compiled(&["-O2", "-pipe", "-std=c++17", "-ftemplate-depth=1024"], 0),
    },
    Language {
        language: "java",
        aliases: &[],
        runtime: None,
        binaries: &["javac"],
        version_args: &["-version"],
        default_file: "Main.java",
        kind: Kind::Java,
    },
    Language {
        language: "rust",
        aliases: &["rs"],
        runtime: None,
        binaries: &["rustc"],
        version_args: &["--version"],
        default_file: "main.rs",
        kind: Kind::Compiled(&["-O", "--edition=2021"], 2 << 30),
    },
    Language {
        language: "go",
        aliases: &["golang"],
        runtime: None,
        binaries: &["go"],
        version_args: &["version"],
        default_file: "main.go",
        kind: Kind::Go,
    },
    Language {
        language: "ruby",
        aliases: &["ruby3", "rb"],
        runtime: None,
        binaries: &["ruby"],
        version_args: &["--version"],
        default_file: "main.rb",
        kind: Kind::Interpreted,
    },
    Language {
        language: "php",
        aliases: &[],
        runtime: None,
        binaries: &["php"],
        version_args: &["--version"],
        default_file: "main.php",
        kind: Kind::Interpreted,
    },
    Language {
        language: "perl",
        aliases: &["pl"],
        runtime: None,
        binaries: &["perl"],
        version_args: &["-e", "print $^V"],
        default_file: "main.pl",
        kind: Kind::Interpreted,
    },
    Language {
        language: "lua",
        aliases: &[],
        runtime: None,
        binaries: &["lua", "lua5.4", "lua5.3", "lua5.2", "lua5.1", "luajit"],
        version_args: &["-v"],
        default_file: "main.lua",
        kind: Kind::Interpreted,
    },
];

/// An installed toolchain.
#[derive(Debug, Clone)]
pub(crate) struct Toolchain {
    pub(crate) lang: &'static Language,
    /// The binary, as the sandbox sees it (same path: `/usr` is bound in place).
    pub(crate) binary: PathBuf,
    pub(crate) version: String,
}

/// The commands of one run: the compile stage (if any) and the run stage.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) compile: Option<Vec<String>>,
    pub(crate) run: Vec<String>,
    /// Extra environment of both stages.
    pub(crate) env: Vec<(String, String)>,
    /// Address space granted beyond the memory limit (runtimes that reserve it up front).
    pub(crate) address_space_allowance: u64,
}

impl Toolchain {
    pub(crate) fn runtime(&self) -> Runtime {
        Runtime {
            language: self.lang.language.to_owned(),
            version: self.version.clone(),
            aliases: self.lang.aliases.iter().map(|a| (*a).to_owned()).collect(),
            runtime: self.lang.runtime.map(str::to_owned),
        }
    }

    /// Whether `name` names this language.
    pub(crate) fn answers_to(&self, name: &str) -> bool {
        let name = name.trim();
        self.lang.language.eq_ignore_ascii_case(name) || self.lang.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    /// The commands for `files` (names already checked), `args` and a memory limit in bytes.
    pub(crate) fn plan(&self, files: &[String], args: &[String], memory: u64) -> Plan {
        let bin = self.binary.to_string_lossy().into_owned();
        let entry = files.first().cloned().unwrap_or_else(|| self.lang.default_file.to_owned());
        let mib = (memory >> 20).max(16);
        let mut env = Vec::new();
        let mut allowance = 0;
        let (compile, mut run) = match self.lang.kind {
            Kind::Interpreted => (None, vec![bin, entry]),
            Kind::Node => {
                allowance = 2 << 30;
                (None, vec![bin, format!("--max-old-space-size={mib}"), "--stack-size=4096".into(), entry])
            }
            Kind::Java => {
                allowance = 2 << 30;
                let java = self.binary.with_file_name("java").to_string_lossy().into_owned();
                let run = vec![
                    java,
                    format!("-Xmx{}m", (mib / 2).max(16)),
                    "-Xss8m".into(),
                    "-XX:+UseSerialGC".into(),
                    "-XX:TieredStopAtLevel=1".into(),
                    "-XX:ReservedCodeCacheSize=64m".into(),
                    "-XX:CompressedClassSpaceSize=64m".into(),
                    "-XX:MaxMetaspaceSize=256m".into(),
                    "-Xshare:auto".into(),
                    entry,
                ];
                (None, run)
            }
            Kind::Compiled(flags, compiler_allowance) => {
                allowance = compiler_allowance;
                let mut c = vec![bin, "-o".into(), "a.out".into()];
                let sources: Vec<String> = files.iter().filter(|f| is_source(self.lang.language, f)).cloned().collect();
                c.extend(if sources.is_empty() { vec![entry] } else { sources });
                c.extend(flags.iter().map(|f| (*f).to_owned()));
                (Some(c), vec!["./a.out".to_owned()])
            }
            Kind::Go => {
                allowance = 2 << 30;
                env.push(("GOCACHE".into(), "/tmp/gocache".into()));
                env.push(("GOPATH".into(), "/tmp/go".into()));
                env.push(("GO111MODULE".into(), "off".into()));
                let mut c = vec![bin, "build".into(), "-o".into(), "a.out".into()];
                c.extend(files.iter().filter(|f| f.ends_with(".go")).cloned());
                (Some(c), vec!["./a.out".to_owned()])
            }
        };
        run.extend(args.iter().cloned());
        Plan { compile, run, env, address_space_allowance: allowance }
    }
}

/// Whether `file` is a source file the compiler of `language` takes (headers are not).
fn is_source(language: &str, file: &str) -> bool {
    let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match language {
        "c" => ext == "c",
        "c++" => matches!(ext, "cpp" | "cc" | "cxx" | "c++" | "C"),
        "rust" => false,
        _ => false,
    }
}

/// The first installed binary of `lang`, found in the sandbox's bin dirs.
fn find_binary(lang: &Language) -> Option<PathBuf> {
    lang.binaries.iter().flat_map(|b| BIN_DIRS.iter().map(move |d| Path::new(d).join(b))).find(|p| p.is_file())
}

/// The first dotted number (`3.11.2`) in `text`.
pub(crate) fn first_version(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let v = text[start..i].trim_end_matches('.');
            if v.contains('.') {
                return Some(v.to_owned());
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Finds the installed toolchains and their versions (each version command limited to 20 s).
pub(crate) async fn discover() -> Vec<Toolchain> {
    let mut probes = tokio::task::JoinSet::new();
    for (lang, binary) in LANGUAGES.iter().filter_map(|lang| find_binary(lang).map(|b| (lang, b))) {
        probes.spawn(probe(lang, binary));
    }
    let mut found = Vec::new();
    while let Some(done) = probes.join_next().await {
        found.extend(done.ok().flatten());
    }
    // In the table's order, whatever order the probes finished in.
    found.sort_by_key(|t: &Toolchain| LANGUAGES.iter().position(|l| l.language == t.lang.language));
    found
}

/// Runs `binary`'s version command.
async fn probe(lang: &'static Language, binary: PathBuf) -> Option<Toolchain> {
    {
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new(&binary)
                .args(lang.version_args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await;
        match out {
            Ok(Ok(o)) => {
                let text = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                match first_version(&text) {
                    Some(version) => Some(Toolchain { lang, binary, version }),
                    None => {
                        tracing::warn!(binary = %binary.display(), "no version in its output; not offered");
                        None
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(binary = %binary.display(), error = %e, "toolchain does not start; not offered");
                None
            }
            Err(_) => {
                tracing::warn!(binary = %binary.display(), "toolchain's version command hung; not offered");
                None
            }
        }
    }
}

/// Whether `version` satisfies `selector`: `*` or empty, an exact version, or a prefix
/// whose parts are numbers or `x`/`*` (`3`, `3.11`, `3.x`, `3.11.*`).
pub(crate) fn version_matches(selector: &str, version: &str) -> bool {
    let sel = selector.trim();
    if sel.is_empty() || sel == "*" || sel == "latest" {
        return true;
    }
    let mut have = version.split('.');
    for part in sel.split('.') {
        let got = have.next();
        if part == "x" || part == "X" || part == "*" {
            continue;
        }
        if got != Some(part) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_tool_output() {
        assert_eq!(first_version("Python 3.11.2\n").as_deref(), Some("3.11.2"));
        assert_eq!(first_version("v20.20.2").as_deref(), Some("20.20.2"));
        assert_eq!(first_version("GNU bash, version 5.2.15(1)-release").as_deref(), Some("5.2.15"));
        assert_eq!(first_version("javac 17.0.15").as_deref(), Some("17.0.15"));
        assert_eq!(first_version("go version go1.19.8 linux/amd64").as_deref(), Some("1.19.8"));
        assert_eq!(first_version("no digits"), None);
    }

    #[test]
    fn version_selectors() {
        for s in ["*", "", "3", "3.11", "3.x", "3.11.2", "3.11.*", "latest"] {
            assert!(version_matches(s, "3.11.2"), "{s}");
        }
        for s in ["2", "3.10", "3.11.3", "4.x"] {
            assert!(!version_matches(s, "3.11.2"), "{s}");
        }
    }
}
