"""Realistic fake identities for the synthetic cohort.

Every value here is invented, but each sits where a real scanner or RIS puts
PHI, so the de-identification step has something real to find.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

__all__ = ["FakeIdentity", "fake_identity"]

_GIVEN = ["Maria", "Jan", "Amira", "Luca", "Sofia", "Henrik", "Noor", "Tomasz", "Elena", "Kofi", "Ingrid", "Rahul",
          "Chiara", "Mateo", "Yuki", "Olivia", "Pieter", "Fatima", "Dmitri", "Aoife"]
_FAMILY = ["Jansen", "Okafor", "Lindqvist", "Moreau", "Kowalski", "Bianchi", "Haddad", "Fernandes", "Nakamura",
           "O'Brien", "Schneider", "Petrov", "Mensah", "Van Dijk", "Castillo", "Nieminen", "Rossi", "Dubois"]
_STREETS = ["Oak Lane", "Harbour Road", "Kerkstraat", "Via Roma", "Mill Street", "Birch Avenue", "Station Square"]
_CITIES = ["Springfield", "Riverton", "Lakeside", "Northwick", "Eastbrook", "Westmere"]
_HOSPITALS = ["St. Elsewhere General Hospital", "Riverton University Medical Centre", "Lakeside Neuro Institute"]
_PHYSICIANS = ["Carter^Eleanor^^Dr.", "Nguyen^Thomas^^Dr.", "Abara^Grace^^Dr.", "Keller^Stefan^^Dr."]
_OPERATORS = ["Hughes^Sam", "Patel^Anika", "Lopez^Diego", "Berg^Hanna"]


@dataclass(frozen=True)
class FakeIdentity:
    """The invented PHI of one synthetic patient and their MR visit."""

    family_name: str
    given_name: str
    patient_id: str
    other_patient_id: str
    birth_date: dt.date
    sex: str
    weight_kg: float
    size_m: float
    address: str
    phone: str
    study_datetime: dt.datetime
    accession: str
    referring_physician: str
    performing_physician: str
    operator: str
    institution: str
    institution_address: str
    station_name: str
    device_serial: str

    @property
    def patient_name(self) -> str:
        """DICOM PN form: ``Family^Given``."""
        return f"{self.family_name}^{self.given_name}"

    @property
    def age(self) -> str:
        """DICOM AS form, e.g. ``057Y``."""
        d = self.study_datetime.date()
        years = d.year - self.birth_date.year - ((d.month, d.day) < (self.birth_date.month, self.birth_date.day))
        return f"{years:03d}Y"


def fake_identity(rng: np.random.Generator) -> FakeIdentity:
    """Draw one invented identity from ``rng``."""
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 60)))
    study = dt.datetime(2019, 1, 1, 7, 30) + dt.timedelta(days=int(rng.integers(0, 365 * 6)),
                                                          minutes=int(rng.integers(0, 600)),
                                                          seconds=int(rng.integers(0, 60)))
    city = pick(_CITIES)
    hospital = pick(_HOSPITALS)
    return FakeIdentity(
        family_name=pick(_FAMILY),
        given_name=pick(_GIVEN),
        patient_id=f"MRN{int(rng.integers(10**6, 10**7)):07d}",
        other_patient_id=f"NHS{int(rng.integers(10**8, 10**9)):09d}",
        birth_date=birth,
        sex=pick(["F", "M"]),
        weight_kg=round(float(rng.uniform(48, 110)), 1),
        size_m=round(float(rng.uniform(1.52, 1.96)), 2),
        address=f"{int(rng.integers(1, 250))} {pick(_STREETS)}, {city}",
        phone=f"+44 {int(rng.integers(1000, 9999))} {int(rng.integers(100000, 999999))}",
        study_datetime=study,
        accession=f"ACC{int(rng.integers(10**7, 10**8))}",
        referring_physician=pick(_PHYSICIANS),
        performing_physician=pick(_PHYSICIANS),
        operator=pick(_OPERATORS),
        institution=hospital,
        institution_address=f"{int(rng.integers(1, 99))} Hospital Road, {city}",
        station_name=f"MRI{int(rng.integers(1, 9))}-{city[:4].upper()}",
        device_serial=f"SN{int(rng.integers(10**5, 10**6))}",
    )
