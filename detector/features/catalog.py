"""The feature catalog: which numeric columns feed the model, what they mean, how they are scaled.

Measures and excess features
----------------------------
A *measure* is a count per window: events, events of a category, of an action, failures, distinct
targets, devices reached, the biggest burst... The model never sees a measure as an absolute
count, because a service account that reads 50,000 meters an hour would then look anomalous in
every single window. It sees ``excess_<measure> = max(0, log1p(count) - log1p(typical))``, where
*typical* is the entity's own median count over the baseline windows in which the measure was
non-zero ("how many disconnects does it usually send when it sends any"), or 0 if it never
occurred. An entity without a baseline is compared with its peers instead: the median typical of
accounts with the same (inferred) role, or of devices of the same type. Less than usual is not
suspicious, hence the clip at 0. The raw counts and typical values are in the ``counts`` and
``typical`` struct columns for explanations.
"""

from __future__ import annotations

from typing import Final, Literal

from detector.schema import CATEGORIES

EntityKind = Literal["account", "device"]
ENTITY_KINDS: Final[tuple[EntityKind, ...]] = ("account", "device")

# Commands that change a device's state or trust (as opposed to reads, pings and clock syncs):
# the ones whose bursts matter (DESIGN.md: disconnects, firmware pushes, key changes).
CONTROL_ACTIONS: Final = (
    "remote_disconnect", "remote_connect", "load_limit_set", "demand_reset", "fw_download", "fw_activate",
    "key_renewal", "breaker_open", "breaker_close", "tag_placed", "tag_removed",
)

DEVICE_COMMAND_ACTIONS: Final = (
    "remote_disconnect", "remote_connect", "load_limit_set", "demand_reset", "time_sync", "on_demand_read",
    "ping", "fw_download", "fw_activate", "key_renewal", "breaker_open", "breaker_close", "tag_placed",
    "tag_removed", "status_change",
)

MEASURE_LABELS: Final[dict[str, str]] = {
    "events": "events",
    "authentication": "authentication events",
    "account_mgmt": "account-management events",
    "privilege": "privilege events",
    "config_change": "configuration changes",
    "device_command": "device commands",
    "firmware": "firmware events",
    "key_mgmt": "key-management events",
    "remote_access": "remote-access (VPN) events",
    "log_tamper": "audit-log clearing and audit-policy events",
    "device_event": "device-originated events",
    "system": "other system events",
    "execution": "programs started",
    "persistence": "services and scheduled tasks installed or changed",
    "endpoint": "removable-media, file, network and registry events on a host",
    "account_created": "accounts created",
    "privilege_grant": "roles granted and group memberships added",
    "remote_disconnect": "remote disconnects",
    "remote_connect": "remote connects",
    "load_limit_set": "load-limit settings",
    "demand_reset": "demand resets",
    "time_sync": "time synchronizations",
    "on_demand_read": "on-demand reads",
    "ping": "pings",
    "fw_download": "firmware downloads",
    "fw_activate": "firmware activations",
    "key_renewal": "key renewals",
    "breaker_open": "breaker/recloser opens",
    "breaker_close": "breaker/recloser closes",
    "tag_placed": "safety tags placed",
    "tag_removed": "safety tags removed",
    "status_change": "status changes reported by the device",
    "commands": "commands received",
    "failures": "failed events",
    "targets": "distinct targets acted on",
    "devices": "devices reached by control commands",
    "burst_commands": "control commands in the busiest burst",
    "src_ips": "distinct source IPs",
    "src_hosts": "distinct source hosts",
    "issuers": "distinct issuing accounts",
}

# The same labels for a count of one ("1 remote disconnect").
MEASURE_SINGULAR: Final[dict[str, str]] = {
    "events": "event", "authentication": "authentication event", "account_mgmt": "account-management event",
    "privilege": "privilege event", "config_change": "configuration change", "device_command": "device command",
    "firmware": "firmware event", "key_mgmt": "key-management event", "remote_access": "remote-access (VPN) event",
    "log_tamper": "audit-log clearing or audit-policy event", "device_event": "device-originated event",
    "system": "other system event", "execution": "program started",
    "persistence": "service or scheduled task installed or changed",
    "endpoint": "removable-media, file, network or registry event on a host", "account_created": "account created",
    "privilege_grant": "role granted or group membership added", "remote_disconnect": "remote disconnect",
    "remote_connect": "remote connect", "load_limit_set": "load-limit setting", "demand_reset": "demand reset",
    "time_sync": "time synchronization", "on_demand_read": "on-demand read", "ping": "ping",
    "fw_download": "firmware download", "fw_activate": "firmware activation", "key_renewal": "key renewal",
    "breaker_open": "breaker/recloser open", "breaker_close": "breaker/recloser close",
    "tag_placed": "safety tag placed", "tag_removed": "safety tag removed",
    "status_change": "status change reported by the device", "commands": "command received",
    "failures": "failed event", "targets": "distinct target acted on", "devices": "device reached by control commands",
    "burst_commands": "control command in the busiest burst", "src_ips": "distinct source IP",
    "src_hosts": "distinct source host", "issuers": "distinct issuing account",
}

# Every measure is one more feature for the forest to pick at random, which dilutes the others,
# so the lists leave out what adds nothing: device_event for accounts (status changes come from
# devices) and the devices of the busiest burst (for group commands, the window's devices say it).
ACCOUNT_MEASURES: Final = (
    "events", *(c for c in CATEGORIES if c != "device_event"),
    # Actions that matter on their own inside a category that is mostly routine.
    "account_created", "privilege_grant", "remote_disconnect", "breaker_open",
    "failures", "targets", "devices", "burst_commands", "src_ips", "src_hosts",
)

DEVICE_MEASURES: Final = (
    "events", "commands", *DEVICE_COMMAND_ACTIONS, "config_change", "failures", "devices", "burst_commands",
    "issuers",
)

_ACCOUNT_OTHER: Final = (
    "failure_ratio",
    "new_src_ip_events", "new_src_net_events", "new_src_host_events", "new_global_src_ip_events",
    "new_action_count", "new_image_hash_count", "new_setting_count", "weakened_setting_count",
    "hour_rarity", "weekday_rarity", "dormancy_days",
)
_DEVICE_OTHER: Final = ("failure_ratio", "new_issuer_count", "new_image_hash_count", "dormancy_days")

# Every feature, in one table shared by both entity kinds (a name means the same thing for both).
FEATURE_DESCRIPTIONS: Final[dict[str, str]] = {
    **{f"excess_{m}": f"{label}, beyond the usual (0 = not more than usual)"
       for m, label in MEASURE_LABELS.items() if m in ACCOUNT_MEASURES or m in DEVICE_MEASURES},
    "failure_ratio": "share of the window's events that failed",
    "new_src_ip_events": "events from a source IP never seen for this account in the baseline",
    "new_src_net_events": "events from a source network (/24, IPv6 /64) never seen for this account in the baseline",
    "new_src_host_events": "events from a source host never seen for this account in the baseline",
    "new_global_src_ip_events": "events from a source IP never seen for any account in the baseline",
    "new_action_count": "distinct actions this account never performed in the baseline",
    "new_image_hash_count": "distinct firmware image hashes never seen in the baseline",
    "new_setting_count": "distinct settings (configuration targets) nobody changed in the baseline",
    "weakened_setting_count": "distinct settings changed so as to weaken a security control (switched off, "
                              "or a limit loosened tenfold; see detector.features.controls)",
    "hour_rarity": "rarity of the hour in the account's own history (0 = its busiest hour, 1 = never active then)",
    "weekday_rarity": "rarity of the weekday in the account's own history (0 = its busiest day, 1 = never active then)",
    "dormancy_days": "days since the entity's previous activity",
    "new_issuer_count": "issuing accounts never seen for this device in the baseline",
}

# Features stored as log1p(x); explanations show expm1(value) to get the count (or days) back.
LOG1P_FEATURES: Final[frozenset[str]] = frozenset(
    name for name in FEATURE_DESCRIPTIONS
    if name.startswith("new_") or name in ("dormancy_days", "weakened_setting_count"))

# excess_<m> features and their measure: the window's count is ``counts[m]``, the baseline it was
# compared with ``typical[m]`` (both struct columns of the window row).
FEATURE_MEASURE: Final[dict[str, str]] = {
    name: name.removeprefix("excess_") for name in FEATURE_DESCRIPTIONS if name.startswith("excess_")}

# Other features and the context column of the same row that holds the baseline they were
# compared with.
FEATURE_BASELINE: Final[dict[str, str]] = {
    "new_src_ip_events": "baseline_days",
    "new_src_net_events": "baseline_days",
    "new_src_host_events": "baseline_days",
    "new_action_count": "baseline_days",
    "new_issuer_count": "baseline_days",
    "hour_rarity": "hour_share",
    "weekday_rarity": "weekday_share",
    "dormancy_days": "previous_activity",
}


def measures(kind: EntityKind) -> tuple[str, ...]:
    """The measures counted per window for *kind* (see the module docstring)."""
    if kind == "account":
        return ACCOUNT_MEASURES
    if kind == "device":
        return DEVICE_MEASURES
    raise ValueError(f"unknown entity kind {kind!r}; expected one of {ENTITY_KINDS}")


def feature_columns(kind: EntityKind) -> list[str]:
    """Names of the numeric feature columns (Float64, never null) that feed the model for *kind*.

    Parameters
    ----------
    kind
        ``"account"`` or ``"device"``.

    Raises
    ------
    ValueError
        For any other kind.
    """
    other = _ACCOUNT_OTHER if kind == "account" else _DEVICE_OTHER
    return [f"excess_{m}" for m in measures(kind)] + list(other)


# Features the scorer also judges by their own upper tail (see WindowScorer.combined): sparse,
# security-relevant signals whose first-ever values an isolation forest cannot see, because a
# feature that never varied in the baseline is never split on. A device's new issuer is left to the
# forest: meters hear from whichever operator takes the customer's call, so it is routine there.
TAIL_FEATURES: Final[dict[str, tuple[str, ...]]] = {
    "account": (
        # First: when two tail features are equally unprecedented, the first leads the explanation,
        # and a weakened control says more than "2 configuration changes" or "a setting nobody changed".
        "weakened_setting_count",
        "excess_account_mgmt", "excess_privilege", "excess_config_change", "excess_firmware", "excess_key_mgmt",
        "excess_log_tamper", "excess_account_created", "excess_privilege_grant", "excess_remote_disconnect",
        "excess_breaker_open", "excess_failures", "excess_burst_commands", "new_src_ip_events",
        "new_src_net_events", "new_src_host_events", "new_global_src_ip_events", "new_action_count",
        "new_image_hash_count", "new_setting_count", "dormancy_days", "hour_rarity",
    ),
    "device": (
        "excess_remote_disconnect", "excess_fw_download", "excess_fw_activate", "excess_key_renewal",
        "excess_breaker_open", "excess_config_change", "excess_burst_commands", "new_image_hash_count",
    ),
}
