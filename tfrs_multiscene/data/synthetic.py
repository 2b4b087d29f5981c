"""A seeded synthetic multi-scenario world whose click and conversion probabilities are known.

The world (all draws from one ``numpy.random.Generator(cfg.seed)``, so the same config gives
identical tables):

* **Topics** have a word vocabulary and belong to a coarser item *category* (two topics a
  category, e.g. hiking + camping -> outdoors).
* **Users** have sparse latent interests ``theta_u`` over topics (Dirichlet, with a prior that
  depends on the age bucket), a small click bias (std ``USER_BIAS_STD``), and a profile text made from words of
  their top topics ("likes trail, tent and skillet").
* **Items** have a topic mixture ``phi_i`` with a primary topic (which fixes the category), a
  power-law popularity, a quality, a brand (mostly from brands of its category), a log-normal
  price, and a title/description drawn from the words of their topics, so text carries the
  item's topics. A ``cold_item_fraction`` of items is released late: they appear only in the
  last ``cold_period`` of the time span (items column ``is_cold``).
* **Scenarios** (``SCENARIOS``: home_feed, search, social, ads) share the user-item affinity
  ``theta_u . phi_i`` but differ in size (ads is ~9% of impressions), base click and
  conversion rates, how much the affinity counts, a per-scenario re-weighting of topics, a
  per-scenario category effect (its spread fixed by the spec: the draws are standardised)
  and a price effect. Ads is the small scenario whose clicks differ most: its category and
  price effects dominate its click logit, so a scenario-blind model is furthest from the
  oracle there, while a model that knows the scenario can learn the difference from the
  ads data alone (ads-specific effects are low-dimensional; user and item effects are
  shared by all scenarios).
* **Impressions**: user by activity, scenario by share, item by
  ``popularity * exp(exposure_sharpness * affinity)`` (cold items only after release), time
  uniform over the span. The click logit is

      b_s + a_s * z_s(u, i) + quality_i + bias_u + cat_{c(i)} + cat_{s, c(i)}
          + price_s * price_z_i + brand_{b(i)}

  where ``z_s`` is the standardised scenario-weighted affinity; every term is a function of
  user id, item id, category, brand, price and scenario (and the text reflects ``phi_i``), so
  a model can in principle reach the oracle. Conversion given click has its own logit. The
  base rates ``b_s`` / ``d_s`` are calibrated per scenario to the target rates.
* ``true_p_click`` = P(click); ``true_p_conversion`` = P(click and conversion), the
  unconditional probability (conversion only ever happens after a click), so the oracle AUC
  of both tasks is measured over all impressions (:func:`oracle_auc`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tfrs_multiscene.config import GenerateConfig
from tfrs_multiscene.data.schema import (
    DESCRIPTION,
    ITEM_ID,
    PROFILE,
    SCENARIO,
    TIMESTAMP,
    TITLE,
    TRUE_PROB_PREFIX,
    USER_ID,
    Tables,
)
from tfrs_multiscene.evaluation.ranking_metrics import auc

START_TIME = 1_700_000_000  # 2023-11-14, seconds since the epoch

# (topic, category, words). Words are unique across topics.
TOPICS = (
    ("hiking", "outdoors", "trail summit backpack boots hike ridge compass trek alpine canyon waterproof hiking"),
    ("camping", "outdoors", "tent campfire lantern sleeping stove cooler hammock camp tarp firewood bivouac camping"),
    ("cooking", "kitchen", "skillet recipe spice knife wok sauce chef grill pan saute cookware cooking"),
    ("baking", "kitchen", "flour oven dough bread cake pastry whisk mixer cookie sourdough muffin baking"),
    ("gaming", "electronics", "console controller joystick rpg arcade headset gamer esports keyboard quest multiplayer gaming"),
    ("photography", "electronics", "camera lens tripod shutter zoom portrait flash mirrorless photo aperture lighting photography"),
    ("gardening", "home", "seeds soil planter compost shovel hose bulbs garden pruner greenhouse fertilizer gardening"),
    ("decor", "home", "lamp rug cushion vase curtain frame candle mirror shelf wallpaper ornament decor"),
    ("running", "sports", "sneakers marathon jogging pace stride runner shorts sprint track hydration insoles running"),
    ("cycling", "sports", "bike helmet pedal saddle gears chain cyclist mountainbike tire jersey spokes cycling"),
    ("music", "entertainment", "guitar vinyl speaker headphones piano drum album amp ukulele melody studio music"),
    ("books", "entertainment", "novel paperback mystery fantasy biography thriller poetry bookmark hardcover author chapter books"),
    ("fashion", "apparel", "dress jacket denim scarf handbag sweater blazer sandals jewelry coat outfit fashion"),
    ("beauty", "apparel", "lipstick serum moisturizer mascara perfume skincare cleanser palette nail lotion makeup beauty"),
    ("fitness", "lifestyle", "dumbbell yoga mat kettlebell protein workout resistance treadmill barbell stretch gym fitness"),
    ("travel", "lifestyle", "suitcase passport luggage adapter pillow carryon itinerary map voyage souvenir tour travel"),
)
GENERIC_WORDS = (
    "new", "classic", "premium", "deluxe", "compact", "lightweight", "essential", "set",
    "edition", "series", "pro", "mini", "ultra", "original", "everyday", "durable",
)
AGE_BUCKETS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_SHARES = (0.20, 0.30, 0.22, 0.16, 0.12)
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zen", "tri", "pax", "qui", "dor",
              "fel", "gra", "hul", "jin", "bex", "cor")


@dataclasses.dataclass(frozen=True)
class ScenarioSpec:
    """How one scenario differs from the others (shares and rates are targets)."""

    name: str
    share: float                # fraction of all impressions
    click_rate: float           # mean P(click)
    conversion_rate: float      # mean P(conversion | click)
    affinity_weight: float      # weight of the user-item affinity in the click logit
    exposure_sharpness: float   # how strongly impressions follow the affinity
    topic_reweight_std: float   # std of the log re-weighting of topics in the affinity
    category_effect_std: float  # std of the scenario-specific category effect on clicks
    price_effect: float         # coefficient of the standardised log price on clicks


SCENARIOS = (
    ScenarioSpec("home_feed", 0.48, 0.10, 0.15, 0.5, 1.0, 0.0, 0.0, 0.0),
    ScenarioSpec("search", 0.25, 0.18, 0.25, 0.6, 2.0, 0.2, 0.2, 0.1),
    ScenarioSpec("social", 0.18, 0.07, 0.10, 0.45, 1.0, 0.2, 0.4, 0.0),
    ScenarioSpec("ads", 0.09, 0.10, 0.20, 0.3, 0.3, 0.2, 2.0, -1.0),
)
USER_BIAS_STD = 0.1  # per-user click bias (small: few clicks per user reveal it)


@dataclasses.dataclass
class World:
    """The generated tables plus the latent truth behind them (for tests and analysis).

    Arrays are indexed by the row of ``tables.users`` / ``tables.items``:
    ``theta`` [n_users, n_topics] user interests, ``phi`` [n_items, n_topics] item topic
    mixtures, ``primary_topic`` [n_items], ``topic_names`` and ``topic_words`` per topic.
    The parts of the click logit (module docstring), for analyses that fit its form:
    ``impressions`` [n_interactions, 3] each interaction's (user row, item row, scenario
    index into ``SCENARIOS``), ``affinity`` [n_interactions] its ``z_s(u, i)``,
    ``user_bias`` [n_users], ``item_quality``, ``item_category``, ``item_brand``,
    ``item_price_z`` [n_items].
    """

    tables: Tables
    theta: np.ndarray
    phi: np.ndarray
    primary_topic: np.ndarray
    topic_names: list
    topic_words: list
    impressions: np.ndarray = None
    affinity: np.ndarray = None
    user_bias: np.ndarray = None
    item_quality: np.ndarray = None
    item_category: np.ndarray = None
    item_brand: np.ndarray = None
    item_price_z: np.ndarray = None


def generate(cfg: GenerateConfig) -> Tables:
    """The three tables of a synthetic world built from ``cfg`` (deterministic in cfg.seed)."""
    return simulate(cfg).tables


def simulate(cfg: GenerateConfig) -> World:
    """Build the whole synthetic world; see the module docstring for the model."""
    _check_config(cfg)
    rng = np.random.default_rng(cfg.seed)
    topics = _topic_table(cfg.topics)
    categories = sorted({t[1] for t in topics})
    topic_category = np.array([categories.index(t[1]) for t in topics])
    users, theta, user_bias = _make_users(rng, cfg.users, topics)
    items, item = _make_items(rng, cfg, topics, topic_category, categories)
    effects = _scenario_effects(rng, cfg.topics, len(categories), item["n_brands"])
    inter = _sample_impressions(rng, cfg, theta, item, effects)
    affinity = inter["affinity"] = inter["affinity"].pairs(inter["user"], inter["item"], inter["scenario"])
    _draw_labels(rng, inter, theta, item, user_bias, effects)

    interactions = pd.DataFrame({
        USER_ID: users[USER_ID].to_numpy()[inter["user"]],
        ITEM_ID: items[ITEM_ID].to_numpy()[inter["item"]],
        SCENARIO: np.array([s.name for s in SCENARIOS], dtype=object)[inter["scenario"]],
        TIMESTAMP: inter["timestamp"].astype(np.int64),
        "click": inter["click"].astype(np.int64),
        "conversion": inter["conversion"].astype(np.int64),
        TRUE_PROB_PREFIX + "click": inter["p_click"],
        TRUE_PROB_PREFIX + "conversion": inter["p_conversion"],
    })
    tables = Tables(interactions, items, users, tasks=("click", "conversion"),
                    name=f"synthetic(seed={cfg.seed})")
    return World(tables, theta, item["phi"], item["primary"], [t[0] for t in topics], [t[2] for t in topics],
                 impressions=np.stack([inter["user"], inter["item"], inter["scenario"]], axis=1), affinity=affinity,
                 user_bias=user_bias, item_quality=item["quality"], item_category=item["category"],
                 item_brand=item["brand"], item_price_z=item["price_z"])


def oracle_auc(tables: Tables) -> dict:
    """Best achievable AUC per scenario and task: the AUC of ``true_p_<task>`` on the labels.

    Returns ``{scenario: {task: auc}}`` for every task with both a label and a true
    probability column; NaN where a scenario has only one class of that label.
    """
    frame = tables.interactions
    tasks = [t for t, col in tables.true_prob_columns.items() if t in frame.columns]
    if not tasks:
        raise ValueError("oracle_auc needs true_p_<task> columns next to the labels "
                         "(only the synthetic generator writes them)")
    out = {}
    for scenario, group in frame.groupby(SCENARIO, sort=True):
        out[str(scenario)] = {
            t: auc(group[t].to_numpy(), group[TRUE_PROB_PREFIX + t].to_numpy()) for t in tasks
        }
    return out


# --------------------------------------------------------------------------- world parts


def _check_config(cfg: GenerateConfig) -> None:
    problems = []
    if cfg.users < 1 or cfg.items < 2 or cfg.impressions < len(SCENARIOS):
        problems.append("need users >= 1, items >= 2 and impressions >= number of scenarios")
    if cfg.topics < 2:
        problems.append("need topics >= 2")
    if not 0 <= cfg.cold_item_fraction < 1:
        problems.append(f"cold_item_fraction must be in [0, 1), got {cfg.cold_item_fraction}")
    if not 0 < cfg.cold_period < 1:
        problems.append(f"cold_period must be in (0, 1), got {cfg.cold_period}")
    if cfg.days < 1:
        problems.append(f"days must be >= 1, got {cfg.days}")
    if problems:
        raise ValueError("invalid generate config: " + "; ".join(problems))


def _topic_table(n_topics: int) -> list:
    """``n_topics`` (name, category, words) rows: the built-in ones, then made-up topics."""
    rows = [(name, cat, words.split()) for name, cat, words in TOPICS[:n_topics]]
    made_up = np.random.default_rng(12345)  # fixed: topic words do not depend on the seed
    used = {w for _, _, words in rows for w in words}
    for k in range(len(rows), n_topics):
        words = []
        while len(words) < 12:
            word = "".join(made_up.choice(_SYLLABLES, size=3))
            if word not in used:
                used.add(word)
                words.append(word)
        rows.append((f"topic{k}", f"group{k // 2}", words))
    return rows


def _dirichlet_rows(rng, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of ``alpha`` [n, k] -> [n, k] rows summing to 1."""
    g = rng.gamma(alpha) + 1e-12
    return g / g.sum(axis=1, keepdims=True)


def _make_users(rng, n_users: int, topics: list):
    """Users table, interests theta [n_users, T] and click bias [n_users]."""
    n_topics = len(topics)
    age = rng.choice(len(AGE_BUCKETS), size=n_users, p=AGE_SHARES)
    age_alpha = 0.25 * np.exp(rng.normal(0.0, 0.6, size=(len(AGE_BUCKETS), n_topics)))
    theta = _dirichlet_rows(rng, age_alpha[age])
    bias = rng.normal(0.0, USER_BIAS_STD, size=n_users)
    profiles = []
    for u in range(n_users):
        top = np.argsort(-theta[u])[:2]
        if rng.random() < 0.15:  # a noisy profile names one topic the user does not care for
            top[1] = rng.integers(n_topics)
        words = [w for k in top for w in rng.choice(topics[k][2], size=2, replace=False)]
        profiles.append(f"likes {words[0]}, {words[1]}, {words[2]} and {words[3]}")
    width = len(str(n_users))
    users = pd.DataFrame({
        USER_ID: np.array([f"u{u:0{width}d}" for u in range(n_users)], dtype=object),
        PROFILE: profiles,
        "age_bucket": np.array(AGE_BUCKETS, dtype=object)[age],
    })
    return users, theta, bias


def _make_items(rng, cfg: GenerateConfig, topics: list, topic_category: np.ndarray, categories: list):
    """Items table and a dict of latent item arrays (phi, primary, log_pop, quality, ...)."""
    n_items, n_topics = cfg.items, len(topics)
    primary = rng.integers(n_topics, size=n_items)
    phi = 0.6 * np.eye(n_topics)[primary] + 0.4 * _dirichlet_rows(rng, np.full((n_items, n_topics), 0.3))
    category = topic_category[primary]

    rank = rng.permutation(n_items) + 1
    log_pop = -0.8 * np.log(rank)  # power law: popularity ~ rank^-0.8
    log_pop_z = (log_pop - log_pop.mean()) / log_pop.std()
    quality = rng.normal(0.0, 0.4, size=n_items) + 0.15 * log_pop_z

    n_brands = max(len(categories), n_items // 20)
    brand_names = _brand_names(rng, n_brands)
    brand_category = np.arange(n_brands) % len(categories)
    brand = np.empty(n_items, dtype=np.int64)
    for i in range(n_items):
        own = np.flatnonzero(brand_category == category[i])
        brand[i] = rng.choice(own) if rng.random() < 0.8 else rng.integers(n_brands)

    log_price = rng.uniform(np.log(10), np.log(200), size=len(categories))[category]
    log_price = log_price + rng.normal(0.0, 0.6, size=n_items)
    price_z = (log_price - log_price.mean()) / log_price.std()

    n_cold = round(cfg.cold_item_fraction * n_items)
    is_cold = np.zeros(n_items, dtype=np.int64)
    is_cold[rng.choice(n_items, size=n_cold, replace=False)] = 1

    titles, descriptions = [], []
    for i in range(n_items):
        word_topics = rng.choice(n_topics, size=15, p=phi[i])
        words = [rng.choice(topics[k][2]) for k in word_topics]
        lead = [rng.choice(GENERIC_WORDS)] if rng.random() < 0.5 else []
        titles.append(" ".join([brand_names[brand[i]], *lead, *words[:3]]))
        body = [w if rng.random() < 0.75 else rng.choice(GENERIC_WORDS) for w in words[3:]]
        descriptions.append("A " + " ".join(body) + ".")
    width = len(str(n_items))
    items = pd.DataFrame({
        ITEM_ID: np.array([f"i{i:0{width}d}" for i in range(n_items)], dtype=object),
        TITLE: titles,
        DESCRIPTION: descriptions,
        "category": np.array(categories, dtype=object)[category],
        "brand": np.array(brand_names, dtype=object)[brand],
        "price": np.round(np.exp(log_price), 2),
        "is_cold": is_cold,
    })
    latent = {"phi": phi, "primary": primary, "category": category, "brand": brand, "log_pop": log_pop,
                  "quality": quality, "quality_conv": rng.normal(0.0, 0.5, size=n_items),
                  "price_z": price_z, "is_cold": is_cold.astype(bool), "n_brands": n_brands}
    return items, latent


def _brand_names(rng, n: int) -> list:
    """``n`` distinct made-up brand names, sorted."""
    names: set = set()
    while len(names) < n:
        name = "".join(rng.choice(_SYLLABLES, size=2)).capitalize() + rng.choice(["", "co", "x", "ia"])
        names.add(name if name not in names else f"{name}{len(names)}")  # always terminates
    return sorted(names)


def _scenario_effects(rng, n_topics: int, n_categories: int, n_brands: int) -> dict:
    """Per-scenario parameters: topic weights [S, T], category effects [S, C] (click and
    conversion), shared category and brand effects."""
    spec = np.array([[s.topic_reweight_std, s.category_effect_std] for s in SCENARIOS])
    return {
        "topic_weight": np.exp(spec[:, :1] * rng.normal(size=(len(SCENARIOS), n_topics))),
        "category_click": spec[:, 1:] * _standardized(rng.normal(size=(len(SCENARIOS), n_categories))),
        "category_conv": 0.3 * rng.normal(size=(len(SCENARIOS), n_categories)),
        "category_shared": 0.3 * rng.normal(size=n_categories),
        "brand": 0.2 * rng.normal(size=n_brands),
    }


def _standardized(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` centred and scaled to std 1 (so an effect's spread is what its spec says,
    not the luck of a few draws)."""
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(x.std(axis=1, keepdims=True), 1e-12)


class _Affinity:
    """Standardised scenario-weighted user-item affinity z_s(u, i) = (theta_u . (w_s * phi_i)
    - mean_s) / std_s, with exact mean and std over all user-item pairs."""

    def __init__(self, theta, phi, topic_weight):
        self.theta = theta
        self.phi_s = phi[None, :, :] * topic_weight[:, None, :]  # [S, I, T]
        m_theta = theta.T @ theta / len(theta)
        self.mean, self.std = [], []
        for phi_s in self.phi_s:
            mean = theta.mean(0) @ phi_s.mean(0)
            second = float((m_theta * (phi_s.T @ phi_s / len(phi_s))).sum())
            self.mean.append(mean)
            self.std.append(np.sqrt(max(second - mean ** 2, 1e-12)))

    def all_items(self, users, s: int) -> np.ndarray:
        """[len(users), n_items] affinities in scenario s."""
        return (self.theta[users] @ self.phi_s[s].T - self.mean[s]) / self.std[s]

    def pairs(self, users, items, scenarios) -> np.ndarray:
        """[n] affinities of (user, item, scenario) triples."""
        raw = np.einsum("nt,nt->n", self.theta[users], self.phi_s[scenarios, items])
        return (raw - np.asarray(self.mean)[scenarios]) / np.asarray(self.std)[scenarios]


def _sample_impressions(rng, cfg: GenerateConfig, theta, item: dict, effects: dict) -> dict:
    """Impression arrays (user, item, scenario, timestamp), sorted by time."""
    n = cfg.impressions
    span = cfg.days * 86_400
    timestamp = START_TIME + np.sort(rng.integers(0, span, size=n))
    release = START_TIME + int((1.0 - cfg.cold_period) * span)
    activity = rng.lognormal(0.0, 0.8, size=cfg.users)
    user = rng.choice(cfg.users, size=n, p=activity / activity.sum())
    scenario = rng.choice(len(SCENARIOS), size=n, p=[s.share for s in SCENARIOS])
    affinity = _Affinity(theta, item["phi"], effects["topic_weight"])

    # Exposure log-weights: popularity, and new items are promoted once released (x3).
    base = item["log_pop"] + np.log(3.0) * item["is_cold"]
    hidden = np.where(item["is_cold"], -np.inf, 0.0)  # cold items before their release
    chosen = np.empty(n, dtype=np.int64)
    chunk = max(1, 2_000_000 // cfg.items)
    for s, spec in enumerate(SCENARIOS):
        rows = np.flatnonzero(scenario == s)
        for start in range(0, len(rows), chunk):
            r = rows[start:start + chunk]
            logits = base + spec.exposure_sharpness * affinity.all_items(user[r], s)
            logits = logits + np.where(timestamp[r, None] < release, hidden, 0.0)
            chosen[r] = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)  # Gumbel-max
    return {"user": user, "item": chosen, "scenario": scenario, "timestamp": timestamp, "affinity": affinity}


def _calibrate(offsets: np.ndarray, target: float, weights=None) -> float:
    """Bias b with weighted mean of sigmoid(b + offsets) equal to ``target`` (bisection)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.average(_sigmoid(mid + offsets), weights=weights) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _draw_labels(rng, inter: dict, theta, item: dict, user_bias, effects: dict) -> None:
    """Add p_click, p_conversion (unconditional), click and conversion arrays to ``inter``
    (whose ``affinity`` is each interaction's z_s(u, i))."""
    u, i, s = inter["user"], inter["item"], inter["scenario"]
    z = inter.pop("affinity")
    cat = item["category"][i]
    a = np.array([sp.affinity_weight for sp in SCENARIOS])[s]
    price = np.array([sp.price_effect for sp in SCENARIOS])[s]
    click_x = (a * z + item["quality"][i] + user_bias[u] + effects["category_shared"][cat]
               + effects["category_click"][s, cat] + price * item["price_z"][i]
               + effects["brand"][item["brand"][i]])
    conv_x = (0.3 * z + item["quality_conv"][i] - 0.5 * item["price_z"][i]
              + effects["category_conv"][s, cat])
    p_click = np.empty(len(u))
    p_conv_given_click = np.empty(len(u))
    for k, spec in enumerate(SCENARIOS):
        m = s == k
        if not m.any():
            continue
        p_click[m] = _sigmoid(_calibrate(click_x[m], spec.click_rate) + click_x[m])
        d = _calibrate(conv_x[m], spec.conversion_rate, weights=p_click[m])
        p_conv_given_click[m] = _sigmoid(d + conv_x[m])
    click = rng.random(len(u)) < p_click
    conversion = click & (rng.random(len(u)) < p_conv_given_click)
    inter.update(p_click=p_click, p_conversion=p_click * p_conv_given_click,
                 click=click, conversion=conversion)
