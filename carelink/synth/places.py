"""Static UK place data for the synthetic partnership: postcode areas, streets, care homes, titles.

The partnership is modelled on a West Yorkshire integrated-care system: most people live in the
LS, BD, WF, HD and HX postcode areas, with a tail elsewhere in England (people who moved in, or
out-of-area patients).
"""

from __future__ import annotations

import numpy as np

#: (area letters, post town, highest district number, weight). Districts run 1..highest.
POSTCODE_AREAS: tuple[tuple[str, str, int, float], ...] = (
    ("LS", "Leeds", 29, 0.33),
    ("BD", "Bradford", 24, 0.22),
    ("WF", "Wakefield", 17, 0.14),
    ("HD", "Huddersfield", 9, 0.10),
    ("HX", "Halifax", 7, 0.06),
    ("M", "Manchester", 46, 0.020),
    ("S", "Sheffield", 36, 0.015),
    ("B", "Birmingham", 98, 0.010),
    ("NE", "Newcastle upon Tyne", 66, 0.008),
    ("L", "Liverpool", 40, 0.008),
    ("YO", "York", 62, 0.010),
    ("HU", "Hull", 20, 0.006),
    ("DN", "Doncaster", 41, 0.008),
    ("OL", "Oldham", 16, 0.006),
    ("SK", "Stockport", 23, 0.005),
    ("LE", "Leicester", 19, 0.005),
    ("NG", "Nottingham", 25, 0.005),
    ("E", "London", 20, 0.004),
    ("N", "London", 22, 0.003),
    ("SE", "London", 28, 0.003),
    ("CF", "Cardiff", 24, 0.002),
    ("G", "Glasgow", 84, 0.002),
)

#: Letters allowed in the two-letter unit of an inward code (no C, I, K, M, O, V).
UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"

STREET_STEMS: tuple[str, ...] = tuple(
    """Church Station Mill Park Victoria Queen's King's High Main School Chapel Manor Bridge Green Hall
    Springfield Westfield Moor Oak Beech Elm Ash Willow Cedar Holly Meadow Orchard Grange Woodland Valley
    Hillside Rose Albert Alexandra Princess Windsor York Lancaster Cavendish Kirkstall Headingley Otley
    Harrogate Wakefield Bradford Leeds Halifax Dewsbury Saltaire Ilkley Wetherby Roundhay Chapeltown
    Beeston Armley Bramley Horsforth Pudsey Shipley Bingley Keighley Calder Aire Wharfe Pennine Hawthorn
    Laburnum Sycamore Poplar Linden Chestnut Heather Primrose Daisy Bluebell Clover Foxglove Thornhill
    Greenhead Lidget Crossley Sunny Bank Fairfield Ashfield Broadway Parkside Lakeside Nelson Wellington
    Gladstone Cromwell Stanley Lister Priestley Brontë Moorland Ingleborough Rombalds Baildon""".split()
)
STREET_TYPES: tuple[str, ...] = (
    "Road",
    "Street",
    "Lane",
    "Avenue",
    "Close",
    "Drive",
    "Crescent",
    "Grove",
    "Terrace",
    "Way",
    "Gardens",
    "Place",
    "View",
    "Court",
    "Mount",
    "Walk",
    "Rise",
    "Square",
)
STREET_TYPE_WEIGHTS = np.array([22, 18, 10, 9, 7, 7, 5, 5, 5, 3, 3, 2, 2, 1.5, 1.5, 1, 1, 0.5], dtype=float)
#: Abbreviations some systems use for street types.
STREET_ABBREVIATIONS: dict[str, str] = {
    "Road": "Rd",
    "Street": "St",
    "Lane": "Ln",
    "Avenue": "Ave",
    "Close": "Cl",
    "Drive": "Dr",
    "Crescent": "Cres",
    "Grove": "Gr",
    "Terrace": "Terr",
    "Gardens": "Gdns",
    "Place": "Pl",
    "Court": "Ct",
}

CARE_HOME_STEMS: tuple[str, ...] = tuple(
    """Oakwood Meadowbank Beechwood Ashfield Elmhurst Willowbrook Rosedale Hollybank Cedar Lodge Maplewood
    Heatherfield Brookside Riverside Parkview Hillcrest Greenacres Larkfield Fernlea Ivydene Moorlands
    Springfield Abbeyfield Ashgrove Birchwood Highfield Lindley Mulberry Orchard Pinewood Sunnybank
    Thornbury Westwood Woodlands Grange Haven Silverdale Fairview Kirkwood Aire Valley""".split()
)
CARE_HOME_KINDS: tuple[str, ...] = ("Care Home", "Nursing Home", "House", "Lodge", "Court", "Residential Home")

#: Twin forenames that sound or look alike: (name A, sex A, name B, sex B).
TWIN_PAIRS: tuple[tuple[str, str, str, str], ...] = (
    ("JACK", "M", "JAKE", "M"),
    ("OLIVER", "M", "OLIVIA", "F"),
    ("ELLA", "F", "ELLIE", "F"),
    ("ALFIE", "M", "ALBIE", "M"),
    ("LILY", "F", "LILLY", "F"),
    ("EVIE", "F", "EVA", "F"),
    ("MILLIE", "F", "MOLLY", "F"),
    ("AMELIA", "F", "AMELIE", "F"),
    ("HARRY", "M", "HARVEY", "M"),
    ("SAMUEL", "M", "SAMANTHA", "F"),
    ("DANIEL", "M", "DANIELLE", "F"),
    ("LOUIS", "M", "LOUISE", "F"),
    ("MIA", "F", "MAYA", "F"),
    ("SOPHIE", "F", "SOPHIA", "F"),
    ("LUCAS", "M", "LUKE", "M"),
    ("ISAAC", "M", "ISLA", "F"),
    ("HASSAN", "M", "HUSSAIN", "M"),
    ("ZAIN", "M", "ZARA", "F"),
    ("AISHA", "F", "AYESHA", "F"),
    ("FREDDIE", "M", "TEDDY", "M"),
)

#: Titles by sex, with weights, for sources that put a title in the forename field.
TITLES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "M": (("Mr", "MR", "Mr.", "Dr"), (0.75, 0.15, 0.07, 0.03)),
    "F": (("Mrs", "Miss", "Ms", "MRS", "Dr"), (0.5, 0.2, 0.17, 0.1, 0.03)),
    "U": (("Mx", "Dr"), (0.8, 0.2)),
}


def area_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the postcode areas as arrays: letters, towns, highest district, probabilities."""
    letters = np.array([a[0] for a in POSTCODE_AREAS], dtype=object)
    towns = np.array([a[1] for a in POSTCODE_AREAS], dtype=object)
    top = np.array([a[2] for a in POSTCODE_AREAS], dtype=np.int64)
    weights = np.array([a[3] for a in POSTCODE_AREAS], dtype=float)
    return letters, towns, top, weights / weights.sum()
