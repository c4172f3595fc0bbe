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

from dataclasses import dataclass
from typing import Final, Literal

from detector.schema import CATEGORIES

EntityKind = Literal["account", "device"]
ENTITY_KINDS: Final[tuple[EntityKind, ...]] = ("account", "device")

# Commands that change a device's state or trust (as opposed to reads, pings and clock syncs):
# the ones whose bursts matter (ARCHITECTURE.md: disconnects, firmware pushes, key changes).
CONTROL_ACTIONS: Final = (
    "remote_disconnect", "remote_connect", "load_limit_set", "demand_reset", "fw_download", "fw_activate",
    "key_renewal", "breaker_open", "breaker_close", "tag_placed", "tag_removed",
)

DEVICE_COMMAND_ACTIONS: Final = (
    "remote_disconnect", "remote_connect", "load_limit_set", "demand_reset", "time_sync", "on_demand_read",
    "ping", "fw_download", "fw_activate", "key_renewal", "breaker_open", "breaker_close", "tag_placed",
    "tag_removed", "status_change",
)

@dataclass(frozen=True)
class Measure:
    """A count per window (see the module docstring) and how a sentence names it."""

    name: str
    label: str  # for any count but one ("remote disconnects")
    singular: str  # for a count of one ("remote disconnect")


MEASURES: Final[dict[str, Measure]] = {m.name: m for m in (
    Measure("events", "events", "event"),
    Measure("authentication", "authentication events", "authentication event"),
    Measure("account_mgmt", "account-management events", "account-management event"),
    Measure("privilege", "privilege events", "privilege event"),
    Measure("config_change", "configuration changes", "configuration change"),
    Measure("device_command", "device commands", "device command"),
    Measure("firmware", "firmware events", "firmware event"),
    Measure("key_mgmt", "key-management events", "key-management event"),
    Measure("remote_access", "remote-access (VPN) events", "remote-access (VPN) event"),
    Measure("log_tamper", "audit-log clearing and audit-policy events", "audit-log clearing or audit-policy event"),
    Measure("device_event", "device-originated events", "device-originated event"),
    Measure("system", "other system events", "other system event"),
    Measure("execution", "programs started", "program started"),
    Measure("persistence", "services and scheduled tasks installed or changed",
            "service or scheduled task installed or changed"),
    Measure("endpoint", "removable-media, file, network and registry events on a host",
            "removable-media, file, network or registry event on a host"),
    Measure("account_created", "accounts created", "account created"),
    Measure("privilege_grant", "roles granted and group memberships added", "role granted or group membership added"),
    Measure("remote_disconnect", "remote disconnects", "remote disconnect"),
    Measure("remote_connect", "remote connects", "remote connect"),
    Measure("load_limit_set", "load-limit settings", "load-limit setting"),
    Measure("demand_reset", "demand resets", "demand reset"),
    Measure("time_sync", "time synchronizations", "time synchronization"),
    Measure("on_demand_read", "on-demand reads", "on-demand read"),
    Measure("ping", "pings", "ping"),
    Measure("fw_download", "firmware downloads", "firmware download"),
    Measure("fw_activate", "firmware activations", "firmware activation"),
    Measure("key_renewal", "key renewals", "key renewal"),
    Measure("breaker_open", "breaker/recloser opens", "breaker/recloser open"),
    Measure("breaker_close", "breaker/recloser closes", "breaker/recloser close"),
    Measure("tag_placed", "safety tags placed", "safety tag placed"),
    Measure("tag_removed", "safety tags removed", "safety tag removed"),
    Measure("status_change", "status changes reported by the device", "status change reported by the device"),
    Measure("commands", "commands received", "command received"),
    Measure("failures", "failed events", "failed event"),
    Measure("targets", "distinct targets acted on", "distinct target acted on"),
    Measure("devices", "devices reached by control commands", "device reached by control commands"),
    Measure("burst_commands", "control commands in the busiest burst", "control command in the busiest burst"),
    Measure("src_ips", "distinct source IPs", "distinct source IP"),
    Measure("src_hosts", "distinct source hosts", "distinct source host"),
    Measure("issuers", "distinct issuing accounts", "distinct issuing account"),
)}

MEASURE_LABELS: Final[dict[str, str]] = {name: m.label for name, m in MEASURES.items()}

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

FeatureKind = Literal["excess", "novelty", "ratio", "hour", "weekday", "dormancy"]
"""How a feature is computed and explained: ``excess`` of a measure over its typical count; ``novelty``,
what the baseline never held (stored as log1p of a count); a ``ratio``; the rarity of the window's
``hour`` or ``weekday``; ``dormancy`` (log1p of days)."""


@dataclass(frozen=True)
class Feature:
    """One model input: its name, kind, meaning, and the sentence a finding's reasons make of it.

    *sentence* is a template for :mod:`detector.explain`: ``{events}`` (the count, "3 events"),
    ``{listed}`` (the values of the row's *listed* column, the ones never seen) and ``{span}``
    ("21 days of baseline"). Excess, ratio, hour, weekday and dormancy features have one sentence per
    kind, written there.
    """

    name: str
    kind: FeatureKind
    description: str
    sentence: str = ""
    listed: str | None = None  # the window column holding the values a novelty sentence names
    clip: int | None = None  # values longer than this are shown cut, with an ellipsis (hashes)
    baseline: str | None = None  # the window column holding what the feature was compared with

    @property
    def measure(self) -> str | None:
        return self.name.removeprefix("excess_") if self.kind == "excess" else None

    @property
    def log1p(self) -> bool:
        """Stored as log1p(x); explanations show expm1(value) to get the count (or days) back."""
        return self.kind in ("novelty", "dormancy")


_NEVER_FOR_ACCOUNT = "never seen for this account in {span}"

# Every feature, in one table shared by both entity kinds (a name means the same thing for both).
FEATURES: Final[dict[str, Feature]] = {f.name: f for f in (
    *(Feature(f"excess_{m.name}", "excess", f"{m.label}, beyond the usual (0 = not more than usual)")
      for m in MEASURES.values() if m.name in ACCOUNT_MEASURES or m.name in DEVICE_MEASURES),
    Feature("failure_ratio", "ratio", "share of the window's events that failed"),
    Feature("new_src_ip_events", "novelty", "events from a source IP never seen for this account in the baseline",
            "{events} from {listed}, " + _NEVER_FOR_ACCOUNT, "new_src_ips", baseline="baseline_days"),
    Feature("new_src_net_events", "novelty",
            "events from a source network (/24, IPv6 /64) never seen for this account in the baseline",
            "{events} from network {listed}, " + _NEVER_FOR_ACCOUNT, "new_src_nets", baseline="baseline_days"),
    Feature("new_src_host_events", "novelty", "events from a source host never seen for this account in the baseline",
            "{events} from host {listed}, " + _NEVER_FOR_ACCOUNT, "new_src_hosts", baseline="baseline_days"),
    Feature("new_global_src_ip_events", "novelty", "events from a source IP never seen for any account in the baseline",
            "source address {listed} was never used by any account in {span}", "new_global_src_ips"),
    Feature("new_action_count", "novelty", "distinct actions this account never performed in the baseline",
            "first time doing {listed} (never in {span})", "new_actions", baseline="baseline_days"),
    Feature("new_image_hash_count", "novelty", "distinct firmware image hashes never seen in the baseline",
            "firmware image hash {listed} never seen in {span}", "new_image_hashes", clip=16),
    Feature("new_setting_count", "novelty", "distinct settings (configuration targets) nobody changed in the baseline",
            "changed {listed}, which nobody changed in {span}", "new_settings"),
    Feature("weakened_setting_count", "novelty",
            "distinct settings changed so as to weaken a security control (switched off, or a limit loosened "
            "tenfold; see detector.features.controls)",
            "weakened a security control: {listed}", "weakened_settings"),
    Feature("hour_rarity", "hour",
            "rarity of the hour in the account's own history (0 = its busiest hour, 1 = never active then)",
            baseline="hour_share"),
    Feature("weekday_rarity", "weekday",
            "rarity of the weekday in the account's own history (0 = its busiest day, 1 = never active then)",
            baseline="weekday_share"),
    Feature("dormancy_days", "dormancy", "days since the entity's previous activity", baseline="previous_activity"),
    Feature("new_issuer_count", "novelty", "issuing accounts never seen for this device in the baseline",
            "commands from {listed}, never seen issuing to this device in {span}", "new_issuers",
            baseline="baseline_days"),
)}

# The registry's columns, by feature, as the rest of the package reads them.
FEATURE_DESCRIPTIONS: Final[dict[str, str]] = {name: f.description for name, f in FEATURES.items()}
LOG1P_FEATURES: Final[frozenset[str]] = frozenset(name for name, f in FEATURES.items() if f.log1p)
# excess_<m> features and their measure: the window's count is ``counts[m]``, the baseline it was
# compared with ``typical[m]`` (both struct columns of the window row).
FEATURE_MEASURE: Final[dict[str, str]] = {name: f.measure for name, f in FEATURES.items() if f.measure}
# Other features and the context column of the same row that holds the baseline they were compared with.
FEATURE_BASELINE: Final[dict[str, str]] = {name: f.baseline for name, f in FEATURES.items() if f.baseline}


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
