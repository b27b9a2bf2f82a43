"""AgentOS's control-plane tables, which EventLogDb does not keep: a clear error for each.

Agno 3.1's BaseDb also declares the tables AgentOS runs itself on — schedules, approvals,
components and configs, service accounts and auth tokens, authorization (roles, policies,
users, audit), MCP OAuth, and Company (products, projects, tasks, sources). They are not agent
memory: they hold leases, version counters and credentials whose semantics are SQL
transactions (claim a due schedule, bump a config version, consume an OAuth code once), and
AgentOS keeps them in its *own* `db=`. Every one of these methods of EventLogDb raises
`ControlPlaneNotSupported` (a `NotImplementedError`, which AgentOS's routes already answer with
503 "... not supported by the configured database"), naming the feature and saying how to run
it on a separate database while the agents keep their memory in the event log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HOW = ("give AgentOS a separate database for it, e.g. "
       "AgentOS(db=SqliteDb(db_file='agentos.db'), agents=[Agent(..., db=EventLogDb(url))]): AgentOS keeps its "
       "control-plane tables in its own db= while the agents' sessions, runs, memories and learnings stay in the "
       "event log (AgentOS's memory routes select it with ?db_id=<EventLogDb id>)")

# feature -> the BaseDb methods of its tables (tests/test_basedb_coverage.py checks that these
# and the methods EventLogDb implements are, together, every public method of BaseDb)
FEATURES: dict[str, tuple[str, ...]] = {
    "Schedules": (
        "claim_due_schedule", "create_schedule", "create_schedule_run", "delete_schedule", "delete_schedule_runs",
        "disable_schedules_for_target", "get_latest_schedule_runs", "get_schedule", "get_schedule_by_name",
        "get_schedule_run", "get_schedule_runs", "get_schedules", "release_schedule", "stamp_schedule_provenance",
        "update_schedule", "update_schedule_run",
    ),
    "Approvals": (
        "create_approval", "delete_approval", "get_approval", "get_approvals", "get_pending_approval_count",
        "update_approval", "update_approval_run_status",
    ),
    "Components and configs": (
        "create_component_with_config", "delete_component", "delete_config", "get_component", "get_config",
        "get_current_config", "get_dependents", "get_latest_config", "get_latest_configs", "get_links",
        "list_components", "list_configs", "load_component_graph", "restore_component", "set_current_version",
        "upsert_component", "upsert_config",
    ),
    "Service accounts and auth tokens": (
        "create_service_account", "delete_auth_token", "delete_service_account", "get_auth_token",
        "get_service_account", "get_service_account_by_name", "get_service_account_by_token_hash",
        "get_service_accounts", "update_service_account", "upsert_auth_token",
    ),
    "Authorization (authz)": (
        "assign_authz_role", "authz_name_is_role", "count_authz_audit_events", "count_authz_users",
        "count_authz_users_by_day", "count_authz_users_by_status", "delete_authz_policy", "delete_authz_role",
        "delete_authz_role_meta", "delete_authz_user", "get_authz_direct_roles", "get_authz_direct_roles_many",
        "get_authz_policies", "get_authz_role_meta", "get_authz_role_policies", "get_authz_user",
        "is_authz_user_disabled", "list_authz_role_meta", "list_authz_role_subjects", "list_authz_roles",
        "list_authz_user_ids", "list_authz_users", "read_authz_audit_events", "record_authz_audit_event",
        "record_authz_decision", "replace_authz_subject_roles", "set_authz_role_policies",
        "set_authz_user_disabled", "unassign_authz_role", "upsert_authz_policy", "upsert_authz_role_meta",
        "upsert_authz_user",
    ),
    "MCP OAuth": (
        "consume_mcp_oauth_transaction", "create_mcp_oauth_client", "delete_mcp_oauth_code",
        "delete_mcp_oauth_refresh", "delete_mcp_oauth_refresh_family", "get_mcp_oauth_client",
        "get_mcp_oauth_code", "get_mcp_oauth_keys", "get_mcp_oauth_refresh", "get_mcp_oauth_transaction",
        "insert_mcp_oauth_key", "mark_mcp_oauth_client_consumed", "store_mcp_oauth_code",
        "store_mcp_oauth_refresh", "store_mcp_oauth_transaction",
    ),
    "Company (products, projects, tasks, sources)": (
        "add_product_routine", "complete_task_run", "count_company_acceptances", "create_product", "create_project",
        "create_source", "create_task", "delete_product", "delete_project", "delete_source", "delete_task",
        "get_product", "get_product_counts", "get_products", "get_project", "get_project_counts", "get_projects",
        "get_source", "get_sources", "get_task", "get_tasks", "restore_product", "restore_project",
        "restore_source", "restore_task", "start_task_run", "transition_project", "transition_task",
        "update_product", "update_project", "update_source", "update_task",
    ),
}
METHODS: dict[str, str] = {name: feature for feature, names in FEATURES.items() for name in names}


class ControlPlaneNotSupported(NotImplementedError):
    """A control-plane table was asked of an EventLogDb; the message says what to do."""

    def __init__(self, feature: str, method: str) -> None:
        self.feature = feature
        self.method = method
        super().__init__(f"{feature} ({method}) are not kept in the agno-eventlog database: {HOW}")


def _refusal(feature: str, name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ControlPlaneNotSupported(feature, name)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Not kept in the event log: raises ControlPlaneNotSupported ({feature})."
    return method


class ControlPlaneMethods:
    """Every control-plane method of BaseDb, each raising `ControlPlaneNotSupported`."""


for _name, _feature in METHODS.items():
    setattr(ControlPlaneMethods, _name, _refusal(_feature, _name))
