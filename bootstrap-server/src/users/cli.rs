//! `arena-bootstrap users reconcile --from FILE`: reads Clerk's export and has the running
//! node bring its directory in line with it (see [`crate::users::reconcile`]).

use std::path::PathBuf;

use crate::users::reconcile::{parse_export, Request};

/// The user directory's commands.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "arena-bootstrap users")]
pub struct UsersCmd {
    /// What to do.
    #[command(subcommand)]
    pub cmd: UsersSub,
}

/// `users` subcommands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum UsersSub {
    /// Bring the node's user directory in line with Clerk's user export (the dashboard's CSV,
    /// or the Backend API's JSON user list): users missing or different are written, users
    /// the export lacks are deleted (unless --keep-missing).
    Reconcile {
        /// The export file.
        #[arg(long)]
        from: PathBuf,
        /// The running node's base URL.
        #[arg(long, env = "ARENA_NODE_URL", default_value = "http://127.0.0.1:8080")]
        node: String,
        /// The node's operator token.
        #[arg(long, env = "ARENA_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        /// Keep directory users that the export lacks.
        #[arg(long)]
        keep_missing: bool,
    },
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum UsersCliError {
    /// The file could not be read.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is not an export this command reads.
    #[error("{0}: {1}")]
    Export(PathBuf, String),
    /// The node could not be reached or refused.
    #[error("the node: {0}")]
    Node(String),
}

/// Runs the command; returns what to print (the node's answer).
pub async fn run(cmd: &UsersCmd) -> Result<String, UsersCliError> {
    let UsersSub::Reconcile { from, node, admin_token, keep_missing } = &cmd.cmd;
    let text = std::fs::read_to_string(from).map_err(|e| UsersCliError::Read(from.clone(), e))?;
    let users = parse_export(&text).map_err(|e| UsersCliError::Export(from.clone(), e))?;
    let body = Request { users, keep_missing: *keep_missing };
    let url = format!("{}/api/admin/users/reconcile", node.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(admin_token)
        .json(&body)
        .send()
        .await
        .map_err(|e| UsersCliError::Node(format!("{url}: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| UsersCliError::Node(e.to_string()))?;
    if !status.is_success() {
        return Err(UsersCliError::Node(format!("{status}: {text}")));
    }
    Ok(text)
}
