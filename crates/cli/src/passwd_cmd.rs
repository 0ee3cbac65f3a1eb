//! `tinsel passwd`: manage a Mosquitto-format password file, like `mosquitto_passwd`.
//!
//! The arguments are read as `mosquitto_passwd` reads them (options first, then the file,
//! username and password), so scripts written for it work unchanged; the exit codes are its
//! codes too (0 done, 1 error, 2 the two passwords typed differ). Every mistake is one line on
//! stderr that says what is wrong and what to do.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use tinsel_auth::password_edit::{self, PasswordEditor};
use tinsel_auth::{DEFAULT_ITERATIONS, Error, HashKind, PasswordHash};

const USAGE: &str = "\
tinsel passwd manages password files for tinsel and mosquitto, like mosquitto_passwd.

Usage: tinsel passwd [-H sha512 | -H sha512-pbkdf2] [-I ITERATIONS] [-c | -D] FILE USERNAME
       tinsel passwd [-H sha512 | -H sha512-pbkdf2] [-I ITERATIONS] [-c] -b FILE USERNAME PASSWORD
       tinsel passwd [-H sha512 | -H sha512-pbkdf2] [-I ITERATIONS] -U FILE

 -b : batch mode: take the password from the command line instead of asking for it.
 -c : create a new password file, replacing any file of that name.
 -D : delete USERNAME from the file.
 -H : the hash: sha512-pbkdf2 (the default, recommended) or sha512 (Mosquitto 1.6 and earlier).
 -I : PBKDF2 iterations for sha512-pbkdf2 (default 101).
 -U : replace the plain-text passwords in FILE with hashes (entries already hashed are kept).

Without -b the password is asked for twice: on the terminal without echo, or as two lines on
standard input when it is not a terminal.
Exit status: 0 done, 1 error, 2 the two passwords differ.
";

/// Manage a password file, like mosquitto_passwd (`tinsel passwd --help` for the options).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, after_help = USAGE)]
pub(crate) struct Args {
    // Its help is Mosquitto's usage line (`help =`: a doc comment would be read as links).
    #[arg(
        help = "[-H sha512|sha512-pbkdf2] [-I ITERATIONS] [-c | -D | -U] [-b] FILE [USERNAME [PASSWORD]]",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..,
        value_name = "ARGS"
    )]
    args: Vec<String>,
}

#[derive(Debug, PartialEq)]
enum Mode {
    Create,
    Delete,
    Update,
    Set,
}

#[derive(Debug)]
struct Request {
    mode: Mode,
    kind: HashKind,
    iterations: u32,
    file: String,
    username: Option<String>,
    /// Given with `-b`.
    password: Option<String>,
}

/// A failure: the message (one line) and the exit code.
struct Failure(String, u8);

fn fail(message: impl Into<String>) -> Failure {
    Failure(message.into(), 1)
}

/// Runs `tinsel passwd`.
pub(crate) fn run(args: Args) -> ExitCode {
    if args.args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match parse(&args.args).and_then(execute) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("tinsel passwd: {message}");
            ExitCode::from(code)
        }
    }
}

fn parse(args: &[String]) -> Result<Request, Failure> {
    let (mut batch, mut create, mut delete, mut update) = (false, false, false, false);
    let mut kind = HashKind::Sha512Pbkdf2;
    let mut iterations = DEFAULT_ITERATIONS;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "-b" => batch = true,
            "-c" => create = true,
            "-D" => delete = true,
            "-U" => update = true,
            "-H" => {
                let name = args
                    .get(i + 1)
                    .ok_or_else(|| fail("-H needs a hash name: sha512-pbkdf2 or sha512"))?;
                kind = HashKind::from_name(name).ok_or_else(|| {
                    fail(format!(
                        "unknown hash type '{name}': use -H sha512-pbkdf2 (recommended) or -H sha512"
                    ))
                })?;
                i += 1;
            }
            "-I" => {
                let n = args
                    .get(i + 1)
                    .ok_or_else(|| fail("-I needs a number of iterations, e.g. -I 101"))?;
                iterations = n
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=tinsel_auth::hash::MAX_ITERATIONS).contains(n))
                    .ok_or_else(|| {
                        fail(format!(
                            "number of iterations must be > 0 (got '{n}'): give a whole number \
                             such as -I 101"
                        ))
                    })?;
                i += 1;
            }
            "--" => {
                i += 1;
                break;
            }
            other if other.starts_with('-') && other.len() > 1 => {
                return Err(fail(format!(
                    "unknown option {other}: the options are -b -c -D -U -H -I \
                     (tinsel passwd --help)"
                )));
            }
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];

    for (a, an, b, bn) in [
        (create, "-c", delete, "-D"),
        (create, "-c", update, "-U"),
        (delete, "-D", update, "-U"),
        (batch, "-b", delete, "-D"),
    ] {
        if a && b {
            return Err(fail(format!(
                "{an} and {bn} cannot be used together: give one of them"
            )));
        }
    }

    let (mode, wanted, shape) = if create && batch {
        (Mode::Create, 3, "-c -b FILE USERNAME PASSWORD")
    } else if create {
        (Mode::Create, 2, "-c FILE USERNAME")
    } else if delete {
        (Mode::Delete, 2, "-D FILE USERNAME")
    } else if update {
        (Mode::Update, 1, "-U FILE")
    } else if batch {
        (Mode::Set, 3, "-b FILE USERNAME PASSWORD")
    } else {
        (Mode::Set, 2, "FILE USERNAME")
    };
    if rest.len() != wanted {
        let what = if rest.len() < wanted {
            "missing arguments"
        } else {
            "too many arguments"
        };
        return Err(fail(format!(
            "{what}: expected tinsel passwd {shape} (tinsel passwd --help)"
        )));
    }
    let username = rest.get(1).cloned();
    if let Some(u) = &username {
        password_edit::validate_username(u)
            .map_err(|e| fail(format!("{e}: choose another username")))?;
    }
    let password = if batch { rest.get(2).cloned() } else { None };
    if password
        .as_ref()
        .is_some_and(|p| p.len() > password_edit::MAX_LEN)
    {
        return Err(fail(
            "password must be less than 65536 characters long: choose a shorter one",
        ));
    }
    Ok(Request {
        mode,
        kind,
        iterations,
        file: rest[0].clone(),
        username,
        password,
    })
}

fn execute(req: Request) -> Result<(), Failure> {
    let file = req.file.as_str();
    let mut editor = match req.mode {
        Mode::Create => PasswordEditor::new(),
        _ => PasswordEditor::load(file).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                fail(format!(
                    "unable to open password file {file}: it does not exist; use -c to create it"
                ))
            }
            Error::Io { source, .. } => {
                fail(format!("unable to open password file {file}: {source}"))
            }
            other => fail(format!("{other}: fix or remove that line, then try again")),
        })?,
    };
    match req.mode {
        Mode::Delete => {
            let user = req.username.as_deref().unwrap_or_default();
            if !editor.remove(user) {
                return Err(fail(format!(
                    "user {user} not found in password file {file}; nothing was changed"
                )));
            }
        }
        Mode::Update => {
            editor
                .hash_plaintext(req.kind, req.iterations)
                .map_err(|e| fail(format!("unable to hash password: {e}")))?;
        }
        Mode::Create | Mode::Set => {
            let user = req.username.as_deref().unwrap_or_default();
            let password = match req.password {
                Some(p) => p,
                None => ask_password()?,
            };
            let hash = PasswordHash::new(req.kind, req.iterations, password.as_bytes())
                .map_err(|e| fail(format!("unable to hash password: {e}")))?;
            editor
                .set(user, &hash)
                .map_err(|e| fail(format!("{e}: choose another username")))?;
        }
    }
    editor.save(file).map_err(|e| match e {
        Error::Io { source, .. } => fail(format!(
            "unable to write password file {file}: {source}; check the directory exists and is writable"
        )),
        other => fail(other.to_string()),
    })
}

/// Asks twice, as `mosquitto_passwd` does: from the terminal without echo, or two lines of
/// standard input when it is not a terminal (so scripts can pipe a password in).
fn ask_password() -> Result<String, Failure> {
    let first = read_secret("Password: ")?;
    let second = read_secret("Reenter password: ")?;
    if first != second {
        return Err(Failure(
            "passwords do not match: run it again and type the same password twice".into(),
            2,
        ));
    }
    Ok(first)
}

fn read_secret(prompt: &str) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        rpassword::prompt_password(prompt)
            .map_err(|e| fail(format!("cannot read the password from the terminal: {e}")))?
    } else {
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| fail(format!("cannot read the password from standard input: {e}")))?;
        println!();
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if line.is_empty() {
        return Err(fail(
            "empty password: type a password, or give one with -b FILE USERNAME PASSWORD",
        ));
    }
    if line.len() > password_edit::MAX_LEN {
        return Err(fail(
            "password must be less than 65536 characters long: choose a shorter one",
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Request, String> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v).map_err(|Failure(m, _)| m)
    }

    #[test]
    fn reads_arguments_as_mosquitto_passwd() {
        let r = p(&["-H", "sha512", "-c", "-b", "f", "u", "pw"]).unwrap();
        assert_eq!(r.mode, Mode::Create);
        assert_eq!(r.kind, HashKind::Sha512);
        assert_eq!(r.password.as_deref(), Some("pw"));
        let r = p(&["-I", "2000", "f", "u"]).unwrap();
        assert_eq!((r.mode, r.iterations, r.password), (Mode::Set, 2000, None));
        assert_eq!(p(&["-U", "f"]).unwrap().mode, Mode::Update);
        assert_eq!(p(&["-D", "f", "u"]).unwrap().mode, Mode::Delete);
        // A password may start with a dash once the file and username are given.
        assert_eq!(
            p(&["-b", "f", "u", "-x"]).unwrap().password.as_deref(),
            Some("-x")
        );
    }

    #[test]
    fn mistakes_are_one_line_with_what_to_do() {
        for (args, want) in [
            (
                &["-c", "-D", "f", "u"][..],
                "-c and -D cannot be used together",
            ),
            (
                &["-b", "-D", "f", "u"][..],
                "-b and -D cannot be used together",
            ),
            (&["-H", "md5", "f", "u"][..], "unknown hash type 'md5'"),
            (
                &["-I", "0", "f", "u"][..],
                "number of iterations must be > 0",
            ),
            (&["-I"][..], "-I needs a number"),
            (
                &["-c", "f"][..],
                "missing arguments: expected tinsel passwd -c FILE USERNAME",
            ),
            (&["-U", "f", "u"][..], "too many arguments"),
            (
                &["f", "a:b"][..],
                "username must not contain the ':' character",
            ),
            (&["-x", "f", "u"][..], "unknown option -x"),
            (&[][..], "missing arguments"),
        ] {
            let got = p(args).unwrap_err();
            assert!(got.starts_with(want), "{args:?}: {got}");
            assert!(!got.contains('\n'), "{got}");
        }
    }
}
