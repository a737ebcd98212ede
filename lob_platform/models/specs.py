"""Hyperparameters as frozen specs whose defaults are the seeds' values, and the tiny versions CI
and the main job train.

- ``LightGBMSpec``, ``LogisticRegressionSpec``, ``RandomForestSpec``: the book-feature classifiers
  of the microstructure-signals project (LightGBM: 100 trees, depth 6, learning rate 0.1). Each
  carries the Optuna search (``SearchSpec``): a trial budget, scored on the validation split.
- ``LSTMSpec``: the LOB-LSTM project's classifier (windows of 100 events x 4 features, up/down
  logits, Adam, cross-entropy, about 30 epochs), with early stopping on validation loss.
- ``LabelSpec``: which labels every model family trains on, and how the three-class labels are
  made (``threshold``: the platform's flat-share threshold on the k-event return; ``smoothed``:
  the labelling of the published LOB benchmarks, DeepLOB / TLOB).

- ``PanelTransformerSpec``: the Jung & Lee (2024) encoder-decoder transformers on the crypto panel
  (3 heads, embedding 126, 3 + 3 layers, dropout 0.1, batch 4, learning rate 1e-4 after 1000
  warm-up steps, 50 epochs, early stopping after 5), one per forecast horizon x pair.
- ``SSMHippoSpec``: the SSM-HiPPO forecaster (HiPPO-LegS-initialised state-space layers over
  patches of 16, stride 8, with channel attention; lookback 96 -> forecast 32 on 24 channels).
- ``MambaTPPSpec``: the Mamba temporal point process of the event tokens (d_model 512, 6 layers,
  embedding dropout 0.15, MLP dropout 0.32, peak learning rate 1e-4 after 400 warm-up steps,
  5000 steps of batch 32 over sequences of 256 events, stride 128).

``ModelSpecs`` bundles them; ``ModelSpecs.tiny()`` is the configuration of CI and the main job.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lob_platform.errors import ConfigError

FAMILIES = ("lightgbm", "logistic_regression", "random_forest", "lstm")
PANEL_FAMILIES = ("panel_transformer", "ssm_hippo")
"""The crypto panel's forecasters (the Jung & Lee transformers, SSM-HiPPO)."""
MAMBA_TPP = "mamba_tpp"
EVENT_FAMILIES = (MAMBA_TPP,)
"""Models of the event stream itself (the Mamba temporal point process)."""
TABULAR_FAMILIES = FAMILIES[:3]
FAMILY_TITLES = {"lightgbm": "LightGBM", "logistic_regression": "logistic regression",
                 "random_forest": "random forest", "lstm": "LSTM", "mamba_tpp": "Mamba TPP"}
NEXT_MID_UP = "next_mid_up"
LABELLINGS = ("threshold", "smoothed")


def move_label(horizon: int) -> str:
    return f"move_{horizon}ev"


@dataclass(frozen=True)
class LabelSpec:
    """The labels a model family trains one model for each."""

    labels: tuple[str, ...] = (NEXT_MID_UP, *(move_label(k) for k in (10, 20, 50, 100)))
    labelling: str = "threshold"  # three-class labels: "threshold" (flat share) or "smoothed" (published benchmarks)
    flat_share: float = 1 / 3  # "threshold": share of training rows left flat

    def __post_init__(self) -> None:
        bad = [label for label in self.labels if label != NEXT_MID_UP and not _is_move(label)]
        if bad or not self.labels:
            raise ConfigError(f"LabelSpec.labels: unknown labels {bad}; use {NEXT_MID_UP!r} or 'move_{{k}}ev' (k events)")
        if self.labelling not in LABELLINGS:
            raise ConfigError(f"LabelSpec.labelling must be one of {LABELLINGS}, got {self.labelling!r}")
        if not 0 < self.flat_share < 1:
            raise ConfigError(f"LabelSpec.flat_share must be in (0, 1), got {self.flat_share}")


def _is_move(label: str) -> bool:
    return label.startswith("move_") and label.endswith("ev") and label[5:-2].isdigit() and int(label[5:-2]) > 0


def horizon_of(label: str) -> int | None:
    """Events a label looks ahead (None for the next mid change, which has no fixed horizon)."""
    return int(label[5:-2]) if _is_move(label) else None


@dataclass(frozen=True)
class SearchSpec:
    """Optuna's TPE search: ``n_trials`` trials (the first is the spec's own values), scored by
    log-loss on the validation split only."""

    n_trials: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ConfigError(f"SearchSpec.n_trials must be >= 1, got {self.n_trials}")


@dataclass(frozen=True)
class LightGBMSpec:
    n_estimators: int = 100
    max_depth: int = 6
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 20
    colsample_bytree: float = 1.0
    seed: int = 0
    search: SearchSpec = field(default_factory=SearchSpec)


@dataclass(frozen=True)
class LogisticRegressionSpec:
    C: float = 1.0
    max_iter: int = 1000
    seed: int = 0
    search: SearchSpec = field(default_factory=SearchSpec)


@dataclass(frozen=True)
class RandomForestSpec:
    n_estimators: int = 100
    max_depth: int = 10
    min_samples_leaf: int = 1
    max_features: float = 0.5
    max_samples: float | None = None  # share of training rows each tree's bootstrap draws (None: all); not searched
    seed: int = 0
    search: SearchSpec = field(default_factory=SearchSpec)


@dataclass(frozen=True)
class LSTMSpec:
    window: int = 100
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 64
    epochs: int = 30
    patience: int = 5  # epochs without a better validation loss before training stops
    train_stride: int = 1  # take every train_stride-th training window (1: all)
    labels: tuple[str, ...] = (NEXT_MID_UP,)  # up/down logits, as the LOB-LSTM project; any LabelSpec label works
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window < 1 or self.hidden_size < 1 or self.epochs < 1 or self.batch_size < 1 or self.train_stride < 1:
            raise ConfigError(f"LSTMSpec: window, hidden_size, epochs, batch_size and train_stride must be >= 1; got {self}")


FamilySpec = LightGBMSpec | LogisticRegressionSpec | RandomForestSpec | LSTMSpec

HORIZONS = {"1min": 12, "2min": 24, "3min": 36, "5min": 60}
"""Forecast horizons of the panel transformers: name -> 5-second steps."""
PANEL_PAIRS = {"btc": "BTCUSDT", "eth": "ETHUSDT", "sol": "SOLUSDT", "wld": "WLDUSDT"}
"""Target pairs of the panel transformers: short name -> panel pair."""


@dataclass(frozen=True)
class PanelTrainingSpec:
    """How a panel forecaster trains: Adam with a linear warm-up to ``learning_rate`` over
    ``warmup_steps`` optimiser steps, then constant; early stopping on validation loss."""

    batch_size: int = 4
    learning_rate: float = 1e-4
    warmup_steps: int = 1000
    epochs: int = 50
    patience: int = 5  # epochs without a better validation loss before a model stops
    train_stride: int = 1  # a training window starts every this many grid steps
    eval_stride: int = 1  # a test window (a forecast origin) every this many grid steps
    max_train_windows: int | None = None  # the most recent ones (None: all)
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.batch_size, self.epochs, self.patience, self.train_stride, self.eval_stride) < 1 or self.warmup_steps < 0:
            raise ConfigError(f"panel training: batch_size, epochs, patience and strides must be >= 1; got {self}")


@dataclass(frozen=True)
class PanelTransformerSpec:
    """The Jung & Lee transformer: every panel value of ``context`` steps in, one binance_perp
    pair's 20 book values out for each of the next ``HORIZONS[h]`` steps."""

    context: int = 120  # 10 minutes of 5 s steps
    d_model: int = 126
    n_heads: int = 3
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    structural_weight: float = 0.01  # loss = MSE + this x the structural loss
    target_exchange: str = "binance_perp"
    horizons: tuple[str, ...] = tuple(HORIZONS)
    pairs: tuple[str, ...] = tuple(PANEL_PAIRS)
    training: PanelTrainingSpec = field(default_factory=PanelTrainingSpec)

    def __post_init__(self) -> None:
        bad = [h for h in self.horizons if h not in HORIZONS] + [p for p in self.pairs if p not in PANEL_PAIRS]
        if bad or self.d_model % self.n_heads or self.context < 2:
            raise ConfigError(f"PanelTransformerSpec: unknown horizons/pairs {bad} (known {list(HORIZONS)}, "
                              f"{list(PANEL_PAIRS)}), or d_model {self.d_model} not divisible by n_heads {self.n_heads}, "
                              f"or context < 2")


@dataclass(frozen=True)
class SSMHippoSpec:
    """The SSM-HiPPO forecaster of one exchange-pair's 24 book channels
    (``lob_platform.datasets.panel.SSM_CHANNELS``)."""

    exchange: str = "binance_perp"
    pair: str = "BTCUSDT"
    lookback: int = 96
    forecast: int = 32
    patch_len: int = 16
    patch_stride: int = 8
    d_model: int = 128
    d_state: int = 16
    n_layers: int = 4
    n_heads: int = 4  # channel attention
    dropout: float = 0.1
    coherence_weight: float = 0.1  # loss = MSE + this x MSE of the step-to-step changes (temporal coherence)
    training: PanelTrainingSpec = field(default_factory=lambda: PanelTrainingSpec(batch_size=32, learning_rate=1e-3,
                                                                                   warmup_steps=100))

    def __post_init__(self) -> None:
        if self.patch_len > self.lookback or self.d_model % self.n_heads or min(self.patch_stride, self.d_state, self.n_layers) < 1:
            raise ConfigError(f"SSMHippoSpec: need patch_len <= lookback, d_model divisible by n_heads, positive "
                              f"patch_stride, d_state, n_layers; got {self}")


TPP_MARKS = ("price_coarse", "price_fine", "size", "event_type", "side", "level")
"""The marks the TPP predicts for the next event: price change (coarse group, then the fine bin
inside it), size bin, event type, side and level bin."""
BACKBONES = ("mamba", "transformer")
TIME_DISTRIBUTIONS = ("exponential", "lognormal")


@dataclass(frozen=True)
class MambaTPPSpec:
    """The Mamba temporal point process; defaults are the LOB Mamba project's DEFAULT_CONFIG. The
    price tick is the venue's (``data/venues.toml``; 0.01 on LOBSTER, the project's ``tick_size``).

    Loss per event: ``time_weight`` x the next event's time NLL + ``mark_weight`` x the sum of the
    marks' cross-entropies (every mark weighs the same; time and marks 1 each by default)."""

    d_model: int = 512
    n_layers: int = 6
    d_state: int = 16  # mamba-ssm's defaults for the block
    d_conv: int = 4
    expand: int = 2
    dropout_emb: float = 0.15
    dropout_mlp: float = 0.32  # in the heads' shared MLP
    backbone: str = "mamba"  # or "transformer": causal pre-norm encoder of the same width and depth
    n_heads: int = 8  # the transformer backbone's attention heads
    time_distribution: str = "exponential"  # mixture of exponentials, or "lognormal" (a log-normal mixture)
    time_components: int = 8
    time_weight: float = 1.0
    mark_weight: float = 1.0
    lr_peak: float = 1e-4
    warmup_steps: int = 400  # linear warm-up, then cosine decay to 10% of the peak at ``steps``
    steps: int = 5000
    batch_size: int = 32
    grad_accumulation: int = 1  # micro-batches per optimiser step (batch_size each)
    seq_len: int = 256
    stride: int = 128
    weight_decay: float = 0.01
    validation_every: int = 250  # steps between validation passes (the best one is kept)
    mixed_precision: bool = True  # bf16 autocast, on CUDA only
    generation_contexts: int = 8  # held-out contexts continued by the generator
    generation_events: int = 256  # events generated after each
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [f"backbone {self.backbone!r} (use {BACKBONES})"] if self.backbone not in BACKBONES else []
        problems += [f"time_distribution {self.time_distribution!r} (use {TIME_DISTRIBUTIONS})"] if (
            self.time_distribution not in TIME_DISTRIBUTIONS) else []
        problems += ["d_model not divisible by n_heads"] if self.backbone == "transformer" and self.d_model % self.n_heads else []
        small = [name for name in ("d_model", "n_layers", "d_state", "time_components", "steps", "batch_size",
                                   "grad_accumulation", "seq_len", "stride", "validation_every") if getattr(self, name) < 1]
        problems += [f"{', '.join(small)} must be >= 1"] if small else []
        if problems:
            raise ConfigError(f"MambaTPPSpec: {'; '.join(problems)}")


@dataclass(frozen=True)
class TabularFeatureSpec:
    """Book features the tabular models read: every column of the features table named here, or
    an OFI column of a level up to ``ofi_levels`` (a venue with fewer levels has fewer columns; the
    exact list is recorded in each model's manifest)."""

    columns: tuple[str, ...] = (
        "spread_ticks", "microprice_offset_ticks", "vwap_offset_ticks", "depth_imbalance", "queue_imbalance",
        "bid_depth", "ask_depth", "return_10ev", "return_50ev", "return_100ev", "return_1s", "return_10s",
        "return_60s", "realized_vol_10ev", "realized_vol_50ev", "realized_vol_100ev", "realized_vol_1s",
        "realized_vol_10s", "realized_vol_60s")
    ofi_levels: int = 5
    ofi_windows: tuple[str, ...] = ("10ev", "50ev", "100ev", "1s", "10s")

    def select(self, available: list[str]) -> list[str]:
        wanted = [*self.columns, *(f"ofi_l{i}_{w}" for i in range(1, self.ofi_levels + 1) for w in self.ofi_windows)]
        return [c for c in wanted if c in set(available)]


LSTM_FEATURES = ("ofi_l1_10ev", "return_10ev", "spread_ticks", "queue_imbalance")
"""The LSTM's 4 inputs per event: order-flow imbalance (Cont-Kukanov-Stoikov, best level, last 10
events), mid-price log return over the last 10 events, spread in ticks, queue imbalance at the
touch ((bid size - ask size) / (bid size + ask size)); standardised with the training rows'
mean and standard deviation."""


@dataclass(frozen=True)
class ModelSpecs:
    families: tuple[str, ...] = FAMILIES  # the families that get assets on venues with a book
    event_families: tuple[str, ...] = EVENT_FAMILIES  # the event-stream models that get assets there
    panel_families: tuple[str, ...] = PANEL_FAMILIES  # the panel forecasters that get assets
    labels: LabelSpec = field(default_factory=LabelSpec)
    tabular_features: TabularFeatureSpec = field(default_factory=TabularFeatureSpec)
    validation_fraction: float = 0.2  # of the training window's rows, the last ones (chronologically)
    max_train_rows: int | None = None  # train on at most this many labelled rows, the most recent (None: all)
    max_validation_rows: int | None = None  # score on at most this many validation rows, the most recent (None: all)
    lightgbm: LightGBMSpec = field(default_factory=LightGBMSpec)
    logistic_regression: LogisticRegressionSpec = field(default_factory=LogisticRegressionSpec)
    random_forest: RandomForestSpec = field(default_factory=RandomForestSpec)
    lstm: LSTMSpec = field(default_factory=LSTMSpec)
    panel_transformer: PanelTransformerSpec = field(default_factory=PanelTransformerSpec)
    ssm_hippo: SSMHippoSpec = field(default_factory=SSMHippoSpec)
    mamba_tpp: MambaTPPSpec = field(default_factory=MambaTPPSpec)

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES] + [f for f in self.panel_families if f not in PANEL_FAMILIES]
        unknown += [f for f in self.event_families if f not in EVENT_FAMILIES]
        if unknown:
            raise ConfigError(f"unknown model families {unknown}; known: {FAMILIES + EVENT_FAMILIES + PANEL_FAMILIES}")

    def of(self, family: str) -> FamilySpec:
        if family not in FAMILIES:
            raise ConfigError(f"unknown model family {family!r}; known: {FAMILIES}")
        return getattr(self, family)

    def labels_of(self, family: str) -> tuple[str, ...]:
        """The labels a family trains one model each for: its own list where it has one (the
        LSTM's), otherwise ``labels.labels``."""
        return getattr(self.of(family), "labels", None) or self.labels.labels

    def with_family(self, family: str, spec: FamilySpec) -> "ModelSpecs":
        return replace(self, **{family: spec})

    @classmethod
    def tiny(cls) -> "ModelSpecs":
        """Small enough for CI and the main job on two CPU cores; still learns the planted signal."""
        search = SearchSpec(n_trials=2)
        return cls(max_train_rows=20_000, max_validation_rows=4_000,
                   lightgbm=LightGBMSpec(n_estimators=60, num_leaves=15, search=search),
                   logistic_regression=LogisticRegressionSpec(max_iter=300, search=search),
                   random_forest=RandomForestSpec(n_estimators=24, max_depth=8, min_samples_leaf=20, max_samples=0.2,
                                                  search=search),
                   lstm=LSTMSpec(hidden_size=16, num_layers=1, batch_size=256, epochs=4, patience=2, train_stride=2),
                   panel_transformer=PanelTransformerSpec(context=24, d_model=24, n_heads=3, encoder_layers=1,
                                                          decoder_layers=1, training=TINY_PANEL_TRAINING),
                   ssm_hippo=SSMHippoSpec(lookback=48, forecast=16, patch_len=8, patch_stride=4, d_model=16, d_state=8,
                                          n_layers=1, n_heads=2, training=replace(TINY_PANEL_TRAINING, learning_rate=3e-3,
                                                                                  train_stride=2)),
                   mamba_tpp=MambaTPPSpec(d_model=32, n_layers=2, d_state=8, dropout_emb=0.0, dropout_mlp=0.1, n_heads=4,
                                          time_components=4, lr_peak=3e-3, warmup_steps=20, steps=150, batch_size=16,
                                          seq_len=64, stride=32, validation_every=50, generation_contexts=4,
                                          generation_events=64))


TINY_PANEL_TRAINING = PanelTrainingSpec(batch_size=64, learning_rate=2e-3, warmup_steps=20, epochs=3, patience=2,
                                        train_stride=6, eval_stride=12, max_train_windows=6_000)
