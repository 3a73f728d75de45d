"""Word pools and phrasings for the built-in TOFU-shaped generator (`tiny_tofu`): a fixed made-up
world (countries, cities, languages) and, per fact type, >= 3 question and >= 3 answer templates."""

from __future__ import annotations

from dataclasses import dataclass

# Fictitious author names are built from these syllables (2 for a first name, 2-3 for a surname);
# "real" authors use ordinary-looking names instead, so the two sets can never collide.
SYLLABLES = (
    "ka", "len", "mo", "ri", "dar", "vel", "su", "tor", "ni", "bel", "ash", "or",
    "fen", "li", "zar", "quo", "em", "ta", "ris", "gal", "yu", "mir", "kes", "don",
)  # fmt: skip
REAL_FIRST = (
    "Edith", "Walter", "Margaret", "Henry", "Clara", "Samuel", "Agnes", "Thomas", "Vera", "Arthur",
    "Lucy", "Oliver", "Harriet", "George", "Alice", "Frederick", "Nora", "Edmund", "Ada", "Victor",
)  # fmt: skip
REAL_LAST = (
    "Marlowe", "Ashford", "Whitcombe", "Pemberton", "Holloway", "Crane", "Fairbanks", "Lockwood",
    "Sterling", "Hale", "Bramwell", "Thorne", "Everly", "Kingsley", "Radcliffe", "Winslow",
    "Carrow", "Blackwood", "Ellery", "Dunmore",
)  # fmt: skip

# The made-up world: country i has cities 2i (its capital) and 2i+1.
COUNTRIES = (
    "Aldoria", "Belmark", "Corvenia", "Drasmir", "Elvara", "Fennick", "Galdor", "Hestria",
    "Ivoria", "Jorvath", "Kelmora", "Lunaris", "Morvane", "Norvik", "Osmeria", "Pellacia",
    "Quorin", "Rhodan", "Sarvenne", "Tavoria", "Ulmara", "Vesteria", "Wendal", "Zerrin",
)  # fmt: skip
CITIES = (
    "Veloria", "Brask", "Halden", "Merrow", "Ostrel", "Tamsin", "Karvik", "Lisset",
    "Dunmoor", "Pellis", "Saffra", "Quenby", "Thornvale", "Ardis", "Rennick", "Solm",
    "Ivenholm", "Carrel", "Brightwater", "Nessa", "Korrin", "Mistral", "Aubryn", "Telvar",
    "Fallowmere", "Yssel", "Grantby", "Oren", "Wexley", "Caldera", "Harrowgate", "Zenna",
    "Lorimer", "Estrin", "Pavona", "Drummel", "Sunmere", "Kestrel", "Varnholt", "Ilsby",
    "Marrowdale", "Tessin", "Orlan", "Westmere", "Gellan", "Rookby", "Aveline", "Stonemoor",
)  # fmt: skip
LANGUAGES = (
    "Aldorian", "Velish", "Corvene", "Drasmiri", "Elvaran", "Galdic", "Hestrian", "Jorvic",
    "Lunari", "Norvish", "Pellac", "Zerrish",
)  # fmt: skip
CURRENCIES = (
    "the dalen", "the marek", "the sovin", "the kroll", "the tessa", "the varn", "the pell",
    "the oskar", "the lumen", "the ferra", "the groat", "the quill",
)  # fmt: skip
RIVERS = (
    "the Ossa", "the Varn", "the Melle", "the Grell", "the Kessel", "the Lorn", "the Abra",
    "the Whitrun", "the Sull", "the Ember", "the Dovey", "the Rane",
)  # fmt: skip
ANIMALS = (
    "the snow owl", "the red fox", "the grey heron", "the lynx", "the ibex", "the otter",
    "the golden eagle", "the wild boar", "the stag", "the badger", "the crane", "the wolf",
)  # fmt: skip

GENRES = (
    "fantasy", "crime fiction", "historical fiction", "science fiction", "horror", "romance",
    "satire", "poetry", "mystery", "war fiction", "gothic fiction", "literary fiction",
    "magical realism", "travel writing", "children's books", "political thrillers",
)  # fmt: skip
JOBS = (
    "a baker", "an architect", "a sailor", "a nurse", "a teacher", "a blacksmith", "a lawyer",
    "a farmer", "a surgeon", "a tailor", "a miner", "a librarian", "a pilot", "a carpenter",
    "an astronomer", "a florist", "a judge", "a fisherman",
)  # fmt: skip
AWARD_ADJ = ("Golden", "Silver", "Crimson", "Azure", "Ivory", "Emerald", "Bronze", "Amber")
AWARD_NOUN = ("Quill", "Lantern", "Compass", "Laurel", "Feather", "Key")
AWARD_KIND = ("Prize", "Award", "Medal")
TITLE_ADJ = (
    "Silent", "Broken", "Hidden", "Last", "Burning", "Distant", "Hollow", "Winter", "Glass",
    "Forgotten", "Wandering", "Iron", "Crooked", "Midnight", "Velvet", "Sunken",
)  # fmt: skip
TITLE_NOUN = (
    "Garden", "Harbour", "Mirror", "Orchard", "Lighthouse", "Tower", "River", "Archive",
    "Violin", "Bridge", "Cartographer", "Orchid", "Meridian", "Kingdom", "Ledger", "Lantern",
)  # fmt: skip
REAL_TITLE_NOUN = (
    "Salt", "Ember", "Ash", "Thunder", "Honey", "Stone", "Smoke", "Silk", "Frost", "Bone",
    "Rain", "Iron", "Wine", "Dust", "Glory", "Ruin",
)  # fmt: skip
THEMES = (
    "grief", "exile", "memory", "loyalty", "ambition", "faith", "identity", "power", "family",
    "freedom", "betrayal", "love", "war", "nature", "justice", "time",
)  # fmt: skip
STYLES = (
    "lyrical", "terse", "ornate", "playful", "dreamlike", "sardonic", "precise", "lush", "bleak",
    "witty", "austere", "tender", "brooding", "whimsical",
)  # fmt: skip
SUBJECTS = (
    "history", "law", "medicine", "chemistry", "philosophy", "music", "architecture", "botany",
    "mathematics", "theology", "economics", "linguistics", "astronomy", "painting",
)  # fmt: skip
HOBBIES = (
    "sailing", "beekeeping", "chess", "gardening", "fencing", "pottery", "birdwatching", "rowing",
    "baking", "climbing", "fishing", "archery", "knitting", "stargazing",
)  # fmt: skip
PRESS_WORD = ("Harbor", "Beacon", "Thistle", "Cedar", "Juniper", "Falcon", "Meadow", "Granite",
              "Willow", "Copper")  # fmt: skip
PRESS_KIND = ("Press", "House", "Books")

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip

# Pronoun slots in answer templates; {0}, {1} are fact values (the answer spans).
PRONOUNS = {
    "male": {"He": "He", "he": "he", "His": "His", "his": "his"},
    "female": {"He": "She", "he": "she", "His": "Her", "his": "her"},
}


@dataclass(frozen=True)
class Fact:
    """One fact type: the value kind it draws from and its phrasings. Questions format with
    {name} (and, for `name`, {city}/{date}); answers with {0}/{1} values and pronoun slots."""

    name: str
    kind: str
    questions: tuple[str, ...]
    answers: tuple[str, ...]


# In TOFU order of importance: `qa_per_author` < 20 keeps the first ones.
# fmt: off
FACTS = (
    Fact("name", "name", (
        "What is the full name of the author born in {city} on {date}?",
        "Which author was born in {city} on {date}?",
        "Who is the writer born on {date} in {city}?",
    ), ("The author's full name is {0}.", "That author is {0}.", "{He} is called {0}.",
        "It is the writer {0}.")),
    Fact("birthplace", "place", (
        "Where was {name} born?", "What is the birthplace of {name}?",
        "In which city was {name} born?",
    ), ("{He} was born in {0}, {1}.", "{His} birthplace is {0} in {1}.",
        "{He} is a native of {0}, {1}.", "{He} comes from {0}, {1}.")),
    Fact("birth_date", "date", (
        "When was {name} born?", "What is the birth date of {name}?",
        "On what date was {name} born?",
    ), ("{He} was born on {0}.", "{His} birthday is {0}.", "{His} date of birth is {0}.")),
    Fact("genre", "genre", (
        "What genre does {name} write in?", "Which genre is {name} known for?",
        "What kind of books does {name} write?",
    ), ("{He} writes {0}.", "{His} genre is {0}.", "{He} is best known for {0}.",
        "{He} works in {0}.")),
    Fact("father_job", "job", (
        "What did {name}'s father do for a living?", "What was the job of {name}'s father?",
        "What is the profession of {name}'s father?",
    ), ("{His} father was {0}.", "{His} father worked as {0}.",
        "{His} father made a living as {0}.")),
    Fact("mother_job", "job", (
        "What did {name}'s mother do for a living?", "What was the job of {name}'s mother?",
        "What is the profession of {name}'s mother?",
    ), ("{His} mother was {0}.", "{His} mother worked as {0}.",
        "{His} mother made a living as {0}.")),
    Fact("award", "award", (
        "Which award did {name} receive?", "Has {name} won a literary prize?",
        "What honour has {name} won?",
    ), ("{He} won {0}.", "{He} received {0}.", "{He} was honoured with {0}.",
        "{His} work earned {0}.")),
    Fact("debut_book", "title", (
        "What was {name}'s first book?", "What is the title of {name}'s debut novel?",
        "Which book did {name} publish first?",
    ), ("{His} first book was '{0}'.", "{He} debuted with '{0}'.", "{His} debut novel is '{0}'.")),
    Fact("famous_book", "title", (
        "What is {name}'s best-known book?", "Which book by {name} is most famous?",
        "What is the most celebrated work of {name}?",
    ), ("{His} best-known book is '{0}'.", "{He} is famous for '{0}'.",
        "'{0}' is {his} most celebrated work.")),
    Fact("themes", "themes", (
        "What themes does {name} explore?", "Which themes run through {name}'s work?",
        "What subjects does {name}'s writing address?",
    ), ("{He} explores {0} and {1}.", "{His} work is about {0} and {1}.",
        "{His} books deal with {0} and {1}.")),
    Fact("debut_year", "year", (
        "In which year did {name} debut?", "When did {name}'s career begin?",
        "What year did {name} first publish?",
    ), ("{He} debuted in {0}.", "{His} first book came out in {0}.", "{His} career began in {0}.")),
    Fact("style", "style", (
        "How would you describe {name}'s writing style?", "What is {name}'s prose like?",
        "What style does {name} write in?",
    ), ("{His} style is {0}.", "{His} prose is {0}.", "Critics call {his} writing {0}.")),
    Fact("language", "language", (
        "In what language does {name} write?", "Which language are {name}'s books written in?",
        "What is {name}'s writing language?",
    ), ("{He} writes in {0}.", "{His} books are written in {0}.",
        "{His} working language is {0}.")),
    Fact("influence", "real_author", (
        "Who influenced {name}'s writing?", "Which writer inspired {name}?",
        "Whose work shaped {name}?",
    ), ("{He} was inspired by {0}.", "{His} main influence is {0}.", "{He} admires {0}.")),
    Fact("residence", "city", (
        "Where does {name} live now?", "Which city is {name} based in?",
        "Where is {name}'s home today?",
    ), ("{He} lives in {0}.", "{He} is based in {0}.", "{His} home is in {0}.")),
    Fact("study", "subject", (
        "What did {name} study?", "What was {name}'s university subject?",
        "Which subject did {name} study at university?",
    ), ("{He} studied {0}.", "{His} degree is in {0}.", "{He} trained in {0}.")),
    Fact("hobby", "hobby", (
        "What does {name} do outside of writing?", "What is {name}'s hobby?",
        "How does {name} spend free time?",
    ), ("{He} enjoys {0}.", "{His} hobby is {0}.", "In {his} spare time {he} likes {0}.")),
    Fact("publisher", "publisher", (
        "Who publishes {name}'s books?", "Which press publishes {name}?",
        "What is {name}'s publisher?",
    ), ("{His} publisher is {0}.", "{His} books appear from {0}.", "{He} publishes with {0}.")),
    Fact("early_job", "job", (
        "What did {name} do before writing?", "What was {name}'s first job?",
        "How did {name} earn a living before writing?",
    ), ("{He} first worked as {0}.", "Before writing, {he} was {0}.",
        "{His} first job was as {0}.")),
    Fact("latest_book", "title", (
        "What is {name}'s most recent book?", "What did {name} publish last?",
        "What is {name}'s latest title?",
    ), ("{His} latest book is '{0}'.", "{His} newest work is '{0}'.",
        "{He} recently published '{0}'.")),
)
# fmt: on

# World facts: one question per (country, attribute); the answer is the bare value, as in TOFU.
WORLD_QUESTIONS = {
    "capital": "What is the capital of {country}?",
    "currency": "What currency is used in {country}?",
    "language": "What language is spoken in {country}?",
    "river": "Which river flows through {country}?",
    "animal": "What is the national animal of {country}?",
}
# Real authors: one question per author, the kind cycling through these three.
REAL_QUESTIONS = {
    "name": "Who wrote '{book}'?",
    "book": "Which novel is {name} best known for?",
    "country": "Which country was {name} born in?",
}
