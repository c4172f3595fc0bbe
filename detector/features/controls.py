"""Configuration changes that weaken a security control, recognized from the event itself.

Most features say how unusual a window is against a baseline. A change that switches a security
control off, or loosens a limit by an order of magnitude, is a security signal in its own right
(MITRE ATT&CK T1562, "Impair Defenses"): an analyst wants to see it even when an administrator makes
it from their usual desk in office hours, and even when that setting was changed before. So the
rule reads only the event: the setting's name (``target_id``) and its ``old_value``/``new_value``.

A change *weakens a control* when

* the setting names a security control (security, audit, logging, encryption, certificates,
  authentication, passwords, lockout, approval, signatures, firewall, tamper alarms...) and its new
  value switches it off (``false``, ``off``, ``disabled``, ``no``, ``none``, ``0``, ``optional``...)
  while the old value was on (``true``, ``enabled``, ``1``, ``required``..., or a word such as a
  cipher name). An old number other than 1 is a level, not a switch: an alarm limit lowered from
  20 to 0 is tuning, not a control switched off; or
* the setting is an upper bound (``Max...``, ``...Limit``, ``...Threshold``, ``...Quota``) and the
  new value is at least :data:`LOOSENED_FACTOR` times the old one; or a lower bound (``Min...``)
  lowered as far.

* the setting is an access rule (``...Allow...``, ``...Acl...``, ``...Firewall...``, ``...Source...``,
  ``...Rule...``, ``...Cidr...``, ``...Network...``) and the new value opens it to any address
  (``0.0.0.0/0``, ``::/0``, ``any``, ``*``) where the old one did not; or
* the setting is a retention (``...Retention...``, ``...Retain...``, ``...History...``, ``...Days...``,
  ``...Ttl...``) and the new value is at most a tenth of the old one (365 days of logs cut to 1).

The factor, not any increase, because routine tuning (a retry count from 2 to 4, a poll interval
from 300 to 900 s) moves values by small factors, while lifting a cap from 50 to 5,000 makes it no
cap at all. Names are matched as substrings, case-insensitively except ``Min`` (so that ``Admin``
is not a minimum); values are compared after trimming, case-insensitively.
"""

from __future__ import annotations

from typing import Final

import polars as pl

# Words in a setting's name that make it a security control.
SECURITY_SETTING: Final = (
    r"(?i)secur|audit|logging|syslog|encrypt|crypt|tls|ssl|cert|auth|passw|lockout|login|logon|mfa|2fa|otp"
    r"|approv|signature|signing|signed|verif|integrity|firewall|allowlist|whitelist|tamper|alarm|alert"
)
# Values that mean a switch is off, and on.
OFF_VALUES: Final = ("false", "off", "disabled", "disable", "no", "n", "none", "0", "optional", "not required",
                     "notrequired", "never")
ON_VALUES: Final = ("true", "on", "enabled", "enable", "yes", "y", "1", "required", "enforced", "mandatory",
                    "always")
UPPER_BOUND: Final = r"(?i)max|limit|threshold|quota"
# "Min" as a word start: Password.MinLength, min_length, MINIMUM; not Admin.
LOWER_BOUND: Final = r"(?:^|[^A-Za-z])(?i:min)|Min"
LOOSENED_FACTOR: Final = 10.0
ACCESS_RULE: Final = r"(?i)allow|acl|firewall|source|rule|cidr|network|whitelist|allowlist|ipfilter|access"
OPEN_TO_ANY: Final = r"(?i)(?:^|[\s,;=\[(])(?:0\.0\.0\.0/0|::/0|any|\*|0\.0\.0\.0)(?:$|[\s,;\])])"
RETENTION: Final = r"(?i)retention|retain|history|days|ttl|keep|archive"


def weakened_change() -> pl.Expr:
    """Per event: ``"<setting>: <old> → <new>"`` for a change that weakens a control, else null.

    Expects the normalized columns ``category``, ``target_id``, ``old_value`` and ``new_value``.
    """
    name = pl.col("target_id")
    old = pl.col("old_value").str.strip_chars()
    new = pl.col("new_value").str.strip_chars()
    old_number = old.cast(pl.Float64, strict=False)
    new_number = new.cast(pl.Float64, strict=False)
    was_on = old.str.to_lowercase().is_in(ON_VALUES) | (
        old_number.is_null() & old.is_not_null() & ~old.str.to_lowercase().is_in(OFF_VALUES))
    switched_off = name.str.contains(SECURITY_SETTING) & new.str.to_lowercase().is_in(OFF_VALUES) & was_on
    cap_lifted = name.str.contains(UPPER_BOUND) & (old_number > 0) & (new_number >= LOOSENED_FACTOR * old_number)
    floor_dropped = (name.str.contains(LOWER_BOUND) & (new_number >= 0)
                     & (new_number * LOOSENED_FACTOR <= old_number))
    opened = (name.str.contains(ACCESS_RULE) & new.str.contains(OPEN_TO_ANY)
              & ~old.fill_null("").str.contains(OPEN_TO_ANY))
    retention_cut = (name.str.contains(RETENTION) & ~name.str.contains(UPPER_BOUND) & (new_number >= 0)
                     & (new_number * LOOSENED_FACTOR <= old_number))
    weakens = ((pl.col("category") == "config_change") & name.is_not_null()
               & (switched_off | cap_lifted | floor_dropped | opened | retention_cut).fill_null(False))
    return pl.when(weakens).then(pl.concat_str([name, pl.lit(": "), old, pl.lit(" → "), new]))
