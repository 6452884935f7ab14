//! Who is calling: an agent, a human reviewer, or an admin. Each API key belongs to
//! exactly one principal.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    Agent,
    Reviewer,
    Admin,
}

impl PrincipalKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PrincipalKind::Agent => "agent",
            PrincipalKind::Reviewer => "reviewer",
            PrincipalKind::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "agent" => Ok(PrincipalKind::Agent),
            "reviewer" => Ok(PrincipalKind::Reviewer),
            "admin" => Ok(PrincipalKind::Admin),
            other => Err(Error::invalid_field(
                "kind",
                format!("`{other}` is not a principal kind; use agent, reviewer or admin"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// `agent://org/name` for agents, an email-like name for reviewers, `admin:NAME` for admins.
    pub identity: String,
    #[serde(default)]
    pub teams: Vec<String>,
}

pub const TEAM_PREFIX: &str = "team:";
pub const AGENT_PREFIX: &str = "agent://";

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.kind == PrincipalKind::Admin
    }

    /// Does this principal hold the given assignee entry, either by name or through
    /// a team? Only reviewers hold assignee entries: an agent must never be able to
    /// decide a human task, whatever its key claims.
    pub fn holds_assignee(&self, assignee: &str) -> bool {
        if self.kind != PrincipalKind::Reviewer {
            return false;
        }
        match assignee.strip_prefix(TEAM_PREFIX) {
            Some(team) => self
                .teams
                .iter()
                .any(|mine| mine.eq_ignore_ascii_case(team)),
            None => self.identity.eq_ignore_ascii_case(assignee),
        }
    }

    /// Reviewers see (and may decide) tasks assigned to them or their teams; admins see all.
    pub fn may_decide(&self, assignees: &[String]) -> bool {
        self.is_admin() || assignees.iter().any(|entry| self.holds_assignee(entry))
    }

    /// Validates the identity for the kind and normalises teams.
    pub fn new(kind: PrincipalKind, identity: &str, teams: Vec<String>) -> Result<Self> {
        let identity = identity.trim();
        match kind {
            PrincipalKind::Agent => validate_agent_address("identity", identity)?,
            PrincipalKind::Reviewer => validate_reviewer_identity("identity", identity)?,
            PrincipalKind::Admin => {
                validate_name("identity", identity.trim_start_matches("admin:"))?
            }
        }
        let identity = match kind {
            PrincipalKind::Admin if !identity.starts_with("admin:") => format!("admin:{identity}"),
            _ => identity.to_string(),
        };
        if kind != PrincipalKind::Reviewer && !teams.is_empty() {
            return Err(Error::invalid_field(
                "teams",
                "only reviewer keys belong to teams (teams decide human tasks)",
            ));
        }
        let mut normalised_teams = Vec::new();
        for team in teams {
            let team = team
                .trim()
                .trim_start_matches(TEAM_PREFIX)
                .to_ascii_lowercase();
            validate_name("teams", &team)?;
            if !normalised_teams.contains(&team) {
                normalised_teams.push(team);
            }
        }
        Ok(Self {
            kind,
            identity,
            teams: normalised_teams,
        })
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(is_name_char) {
        return Err(Error::invalid_field(
            field,
            format!("`{name}` must be 1-64 characters of letters, digits, `.`, `_` or `-`"),
        ));
    }
    Ok(())
}

/// `agent://segment[/segment...]`, where segments are names.
pub fn validate_agent_address(field: &str, address: &str) -> Result<()> {
    let Some(path) = address.strip_prefix(AGENT_PREFIX) else {
        return Err(Error::invalid_field(
            field,
            format!("`{address}` is not an agent address; expected agent://org/name"),
        ));
    };
    let valid = !path.is_empty()
        && address.len() <= 255
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment.chars().all(is_name_char));
    if !valid {
        return Err(Error::invalid_field(
            field,
            format!(
                "`{address}` is not an agent address; expected agent://org/name with segments of letters, digits, `.`, `_` or `-`"
            ),
        ));
    }
    Ok(())
}

/// A human identity: usually an email; never a team, agent or system name.
pub fn validate_reviewer_identity(field: &str, identity: &str) -> Result<()> {
    let reserved = [TEAM_PREFIX, AGENT_PREFIX, "system:", "admin:"];
    let valid = !identity.is_empty()
        && identity.len() <= 254
        && !reserved.iter().any(|prefix| identity.starts_with(prefix))
        && identity
            .chars()
            .all(|c| is_name_char(c) || matches!(c, '@' | '+'));
    if !valid {
        return Err(Error::invalid_field(
            field,
            format!(
                "`{identity}` is not a reviewer identity; use a name or email such as alice@example.com"
            ),
        ));
    }
    Ok(())
}

/// An entry of a task's assignee list: a reviewer identity or `team:NAME`.
pub fn validate_assignee(field: &str, assignee: &str) -> Result<()> {
    match assignee.strip_prefix(TEAM_PREFIX) {
        Some(team) => validate_name(field, team),
        None => validate_reviewer_identity(field, assignee),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviewer(identity: &str, teams: &[&str]) -> Principal {
        Principal::new(
            PrincipalKind::Reviewer,
            identity,
            teams.iter().map(|t| t.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn reviewers_hold_their_own_name_and_their_teams() {
        let alice = reviewer("alice@example.com", &["oncall"]);
        assert!(alice.holds_assignee("alice@example.com"));
        assert!(alice.holds_assignee("Alice@Example.com"));
        assert!(alice.holds_assignee("team:oncall"));
        assert!(!alice.holds_assignee("team:finance"));
        assert!(!alice.holds_assignee("bob@example.com"));
        assert!(alice.may_decide(&["bob@example.com".into(), "team:oncall".into()]));
        assert!(!alice.may_decide(&["bob@example.com".into()]));
    }

    #[test]
    fn admins_may_decide_anything_agents_nothing() {
        let admin = Principal::new(PrincipalKind::Admin, "root", vec![]).unwrap();
        assert_eq!(admin.identity, "admin:root");
        assert!(admin.may_decide(&["bob@example.com".into()]));
        let agent = Principal::new(PrincipalKind::Agent, "agent://acme/deployer", vec![]).unwrap();
        assert!(!agent.may_decide(&["agent://acme/deployer".into()]));
        // Even a principal built by hand with teams holds nothing unless it is a reviewer.
        let teamed_agent = Principal {
            kind: PrincipalKind::Agent,
            identity: "agent://acme/deployer".into(),
            teams: vec!["oncall".into()],
        };
        assert!(!teamed_agent.may_decide(&["team:oncall".into()]));
    }

    #[test]
    fn identities_are_validated_per_kind() {
        assert!(Principal::new(PrincipalKind::Agent, "acme/deployer", vec![]).is_err());
        assert!(Principal::new(PrincipalKind::Agent, "agent://", vec![]).is_err());
        assert!(Principal::new(PrincipalKind::Agent, "agent://a//b", vec![]).is_err());
        assert!(Principal::new(PrincipalKind::Reviewer, "team:ops", vec![]).is_err());
        assert!(Principal::new(PrincipalKind::Reviewer, "has space", vec![]).is_err());
        assert!(Principal::new(PrincipalKind::Reviewer, "bob", vec!["bad team".into()]).is_err());
        let err =
            Principal::new(PrincipalKind::Agent, "agent://a/b", vec!["oncall".into()]).unwrap_err();
        assert_eq!(err.details["field"], "teams");
        assert!(Principal::new(PrincipalKind::Admin, "root", vec!["oncall".into()]).is_err());
        let with_teams = reviewer("carol@x.io", &["team:OnCall", "oncall"]);
        assert_eq!(with_teams.teams, vec!["oncall".to_string()]);
    }
}
