"""The places and store categories the lake is made of.

Tuples rather than dicts or sets: the random draws index into them, so their order must be part of
the code, never of hashing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class City(NamedTuple):
    country: str  # ISO 3166-1 alpha-2
    name: str  # native spelling, so some are non-ASCII ("Málaga", "München")
    weight: float  # relative size, roughly metropolitan: how many customers and stores it gets


CITIES: tuple[City, ...] = (
    City("ES", "Madrid", 20.0),
    City("ES", "Barcelona", 16.0),
    City("ES", "Valencia", 4.5),
    City("ES", "Sevilla", 3.5),
    City("ES", "Málaga", 2.5),
    City("ES", "Zaragoza", 2.0),
    City("ES", "Bilbao", 1.5),
    City("PT", "Lisboa", 5.0),
    City("PT", "Porto", 3.5),
    City("IT", "Milano", 5.5),
    City("IT", "Roma", 5.0),
    City("IT", "Torino", 2.0),
    City("IT", "Napoli", 2.0),
    City("FR", "Paris", 7.0),
    City("FR", "Lyon", 2.5),
    City("FR", "Marseille", 2.0),
    City("FR", "Toulouse", 1.5),
    City("DE", "Berlin", 4.0),
    City("DE", "München", 2.5),
    City("DE", "Hamburg", 2.0),
    City("DE", "Köln", 1.5),
    City("NL", "Amsterdam", 2.5),
    City("NL", "Rotterdam", 1.5),
)

# Standard-time UTC offset (hours); all of these countries follow EU summer time on top of it.
COUNTRY_UTC_OFFSET: tuple[tuple[str, int], ...] = (
    ("ES", 1),
    ("PT", 0),
    ("IT", 1),
    ("FR", 1),
    ("DE", 1),
    ("NL", 1),
)


class Category(NamedTuple):
    name: str
    store_share: float  # share of the stores
    popularity: float  # how much more (or less) often its stores get orders
    median_amount: float  # EUR
    amount_sigma: float  # lognormal spread of the amount around the median
    cancel_rate: float


CATEGORIES: tuple[Category, ...] = (
    Category("grocery", 0.22, 1.6, 42.0, 0.55, 0.05),
    Category("restaurant", 0.28, 1.5, 24.0, 0.40, 0.07),
    Category("pharmacy", 0.10, 0.8, 19.0, 0.60, 0.04),
    Category("bakery", 0.07, 0.9, 11.0, 0.45, 0.05),
    Category("fashion", 0.07, 0.5, 58.0, 0.60, 0.09),
    Category("electronics", 0.05, 0.3, 125.0, 0.85, 0.10),
    Category("pets", 0.06, 0.6, 36.0, 0.50, 0.05),
    Category("flowers", 0.05, 0.4, 32.0, 0.40, 0.06),
    Category("books", 0.04, 0.4, 21.0, 0.45, 0.05),
    Category("liquor", 0.06, 0.6, 29.0, 0.50, 0.06),
)

# Store names are "<category word in the country's language> <qualifier>", e.g. "Bäckerei Luna".
_LANGUAGES = ("es", "pt", "it", "fr", "de", "nl")
_COUNTRY_LANGUAGE: tuple[tuple[str, str], ...] = (
    ("ES", "es"),
    ("PT", "pt"),
    ("IT", "it"),
    ("FR", "fr"),
    ("DE", "de"),
    ("NL", "nl"),
)
# Category -> its word in each of _LANGUAGES, in that order.
_CATEGORY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("grocery", ("Supermercado", "Mercearia", "Alimentari", "Épicerie", "Lebensmittel", "Supermarkt")),
    ("restaurant", ("Restaurante", "Restaurante", "Trattoria", "Bistrot", "Restaurant", "Eetcafé")),
    ("pharmacy", ("Farmacia", "Farmácia", "Farmacia", "Pharmacie", "Apotheke", "Apotheek")),
    ("bakery", ("Panadería", "Padaria", "Panificio", "Boulangerie", "Bäckerei", "Bakkerij")),
    ("fashion", ("Moda", "Moda", "Moda", "Mode", "Mode", "Mode")),
    ("electronics", ("Electrónica", "Eletrónica", "Elettronica", "Électronique", "Elektronik", "Elektronica")),
    ("pets", ("Mascotas", "Animais", "Animali", "Animalerie", "Tierbedarf", "Dierenwinkel")),
    ("flowers", ("Floristería", "Florista", "Fioraio", "Fleuriste", "Blumen", "Bloemen")),
    ("books", ("Librería", "Livraria", "Libreria", "Librairie", "Buchhandlung", "Boekhandel")),
    ("liquor", ("Bodega", "Garrafeira", "Enoteca", "Cave", "Weinhandlung", "Slijterij")),
)
STORE_NAME_QUALIFIERS: tuple[str, ...] = (
    "Central", "Norte", "Sur", "Plaza", "Mercado", "Express", "Nova", "Prime", "Bella", "Luna",
    "Sol", "Verde", "Azul", "Mar", "Avenida", "Estación", "Puerto", "Roma", "Lux", "Urban",
    "Corner", "24h", "Familiar", "Real", "Victoria", "Alba", "Olivo", "Rio", "Porta", "Oro",
)


def city_weights() -> np.ndarray:
    """Each city's relative size, in CITIES order."""
    return np.array([city.weight for city in CITIES])


def city_standard_utc_offsets() -> np.ndarray:
    """Each city's standard-time UTC offset in hours, in CITIES order."""
    offset_of = dict(COUNTRY_UTC_OFFSET)
    return np.array([offset_of[city.country] for city in CITIES], dtype=np.int64)


def category_values(field: str) -> np.ndarray:
    """One field of every category (e.g. "median_amount"), in CATEGORIES order, to index by category."""
    return np.array([getattr(category, field) for category in CATEGORIES])


def store_word(category: str, country: str) -> str:
    """The word for a store of `category` in the language of `country`."""
    language = dict(_COUNTRY_LANGUAGE)[country]
    return dict(_CATEGORY_WORDS)[category][_LANGUAGES.index(language)]
