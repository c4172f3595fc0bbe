"""How a utility spells its accounts and hosts, applied to a day's events just before they are written.

The simulator generates every utility with one canonical spelling (``jdoe`` / ``JDoe``, ``HES-APP01``)
and renames at the end, column by column, so that a naming scheme never changes what happens — only how
it reads — and the random streams stay those of the default utility. Labels are renamed the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from detector.simulate.population import DOMAIN, FQDN, SERVICE_ACCOUNTS, Population
from detector.simulate.records import Source
from detector.simulate.routine_systems import EXTRA_SERVICES
from detector.simulate.settings import Settings

# Server names in the "fqdn" scheme: hesprd-app-1.corp.example.
_FQDN_HOSTS = {"HES-APP01": "hesprd-app-1", "HES-APP02": "hesprd-app-2", "HES-DB01": "hesprd-db-1",
               "ADMS-APP01": "admsprd-app-1", "ADMS-FEP02": "admsprd-fep-2", "DC01": "corp-dc-1",
               "JUMP01": "pam-jump-1", "VPN01": "vpn-gw-1", "MDM01": "mdmprd-app-1", "OMS01": "omsprd-app-1",
               "CIS01": "cisprd-app-1", "KMS01": "kmsprd-hsm-1", "BACKUP01": "bkpprd-1", "BILL01": "billprd-app-1"}
_FQDN_DOMAIN = "corp.example"

# Planted accounts that never existed before their incident: canonical name -> (first, last, admin-named).
PLANTED_PEOPLE: dict[str, tuple[str, str, bool]] = {
    "kmarsh": ("Kevin", "Marsh", False),
    "adm_tnguyen": ("Thanh", "Nguyen", True),
    "lpatel": ("Laura", "Patel", False),  # benign: the operator onboarded in the scored days
}


def person_name(first: str, last: str, scheme: str, uid: int, *, admin: bool = False) -> tuple[str, str]:
    """(HES spelling, Windows spelling) of a person under *scheme*."""
    if scheme == "first.last":
        name = f"{first}.{last}".lower()
        name = f"adm.{name}" if admin else name
        return name, name
    if scheme == "LAST_F":
        name = f"{last}_{first[0]}".upper()
        name = f"ADM_{name}" if admin else name
        return name, name
    if scheme == "uid":
        name = f"{'a' if admin else 'u'}{uid:05d}"
        return name, name
    base = (first[0] + last).lower()
    return (f"adm_{base}", f"adm_{base}") if admin else (base, first[0] + last)


def _service_name(account: str, scheme: str, uid: int) -> str:
    stem = account.removeprefix("svc_")
    if scheme == "first.last":
        return f"svc.{stem.replace('_', '.')}"
    if scheme == "LAST_F":
        return f"SA_{stem.upper()}"
    if scheme == "uid":
        return f"s{uid:05d}"
    return account


@dataclass(frozen=True)
class Dialect:
    """Renames from the canonical spelling; empty maps when the utility uses the canonical one."""

    accounts: dict[str, str] = field(default_factory=dict)  # HES / DMS / VPN spelling
    windows: dict[str, str] = field(default_factory=dict)  # Active Directory spelling, incl. HOST$
    hosts: dict[str, str] = field(default_factory=dict)  # any spelling of a host -> the new one
    domain_prefix: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.accounts or self.windows or self.hosts or self.domain_prefix)

    @classmethod
    def of(cls, pop: Population, settings: Settings) -> Dialect:
        accounts: dict[str, str] = {}
        windows: dict[str, str] = {}
        hosts: dict[str, str] = {}
        scheme = settings.account_names
        if scheme != "flast":
            uids = np.random.default_rng([pop.seed, 0xD1A1]).choice(90_000, size=len(pop.people) + 64,
                                                                    replace=False) + 10_000
            taken: dict[str, int] = {}
            # (account, Windows name, first name, last name, administrator)
            people: list[tuple[str, str, str, str, bool]] = []
            for p in pop.people:
                first, _, last = p.full_name.partition(" ")
                people.append((p.account, p.win_name, first, last, False))
            people += [(a, a, first, last, admin) for a, (first, last, admin) in PLANTED_PEOPLE.items()]
            for k, (account, win, first, last, admin) in enumerate(people):
                hes, ad = person_name(first, last, scheme, int(uids[k]), admin=admin)
                taken[hes] = taken.get(hes, 0) + 1
                if taken[hes] > 1:  # namesakes get a digit, as IT departments do
                    hes, ad = hes + str(taken[hes]), ad + str(taken[hes])
                accounts[account] = hes
                windows[win] = ad
            services = [*SERVICE_ACCOUNTS, "svc_meterqa", *pop.vendors[1:],
                        *EXTRA_SERVICES[:settings.extra_services]]
            for k, account in enumerate(services):
                new = _service_name(account, scheme, int(uids[len(people) + k]))
                accounts[account] = windows[account] = new
        if settings.host_names == "fqdn":
            for old, new in _FQDN_HOSTS.items():
                hosts[old] = new
                hosts[old.lower()] = new
                hosts[f"{old}.{FQDN}"] = f"{new}.{_FQDN_DOMAIN}"
                windows[f"{old}$"] = f"{new}$"
            hosts["vpn02"] = "vpn-gw-2"
        return cls(accounts, windows, hosts, settings.domain_prefix)

    # ---- events -----------------------------------------------------------------------------------

    def apply(self, frames: dict[Source, pl.DataFrame]) -> dict[Source, pl.DataFrame]:
        if self.is_identity:
            return frames
        out = dict(frames)
        acc, win, host = self._map(self.accounts), self._map(self.windows), self._map(self.hosts)
        hes_user = acc("UserName")
        if self.domain_prefix:
            hes_user = pl.when(pl.col("UserName").is_not_null()).then(pl.lit(f"{DOMAIN}\\") + hes_user)
        out["hes_audit"] = frames["hes_audit"].with_columns(
            hes_user.alias("UserName"),
            pl.when(pl.col("ObjectType") == "User").then(acc("ObjectId")).otherwise(pl.col("ObjectId")),
            host("Workstation"))
        out["hes_commands"] = frames["hes_commands"].with_columns(acc("user"))
        out["dms"] = frames["dms"].with_columns(acc("user"), acc("target"), host("host"))
        out["winsec"] = frames["winsec"].with_columns(
            win("TargetUserName"), win("SubjectUserName"), host("Computer"), host("WorkstationName"),
            host("TargetDomainName"))  # a local account's domain is its computer
        out["vpn"] = frames["vpn"].with_columns(acc("suser"), host("dhost"))
        prefix = f"{DOMAIN}\\"
        jump_user = pl.when(pl.col("suser").str.starts_with(prefix)).then(
            pl.lit(prefix) + self._map(self.windows)("suser", strip=prefix)).otherwise(acc("suser"))
        out["jumphost"] = frames["jumphost"].with_columns(
            jump_user.alias("suser"), host("dhost"), host("shost"), self._text("msg"))
        return out

    def _map(self, mapping: dict[str, str]) -> Callable[..., pl.Expr]:
        """A renamer of columns through *mapping* (values not in it are kept)."""

        def rename(column: str, *, strip: str = "") -> pl.Expr:
            value = pl.col(column).str.strip_prefix(strip) if strip else pl.col(column)
            return value.replace(mapping).alias(column) if mapping else value.alias(column)
        return rename

    def _text(self, column: str) -> pl.Expr:
        """Host names inside free text (the jump host's ``target=HES-APP01``)."""
        short = {k: v for k, v in self.hosts.items() if re.fullmatch(r"[A-Z0-9-]+", k)}
        if not short:
            return pl.col(column)
        return pl.col(column).str.replace_many(list(short), list(short.values()))

    # ---- labels -----------------------------------------------------------------------------------

    def account(self, name: str) -> str:
        """A label's account (lower case) as the normalized events will hold it."""
        return self.accounts.get(name, name).lower()

    def host(self, name: str) -> str:
        return self.hosts.get(name, self.hosts.get(name.upper(), name))


__all__ = ["PLANTED_PEOPLE", "Dialect", "person_name"]
