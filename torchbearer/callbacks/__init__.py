"""Callbacks: the built-in library and the decorator API for writing your own.

Optional integrations (TensorBoard, visdom, livelossplot, PyCM, torchvision, MLflow, Weights & Biases,
Optuna) are imported only when their callback is used.
"""

from torchbearer.bases import Callback, get_metric
from torchbearer.callbacks import imaging, init
from torchbearer.callbacks.aggregate_predictions import AggregatePredictions
from torchbearer.callbacks.between_class import BCPlus
from torchbearer.callbacks.callbacks import CallbackList
from torchbearer.callbacks.checkpointers import Best, Interval, ModelCheckpoint, MostRecent
from torchbearer.callbacks.csv_logger import CSVLogger
from torchbearer.callbacks.cutout import CutMix, Cutout, RandomErase
from torchbearer.callbacks.decorators import (
    LambdaCallback,
    add_to_loss,
    bind_to,
    count_args,
    on_backward,
    on_checkpoint,
    on_criterion,
    on_criterion_validation,
    on_end,
    on_end_epoch,
    on_end_training,
    on_end_validation,
    on_forward,
    on_forward_validation,
    on_init,
    on_sample,
    on_sample_validation,
    on_start,
    on_start_epoch,
    on_start_training,
    on_start_validation,
    on_step_training,
    on_step_validation,
    once,
    once_per_epoch,
    only_if,
)
from torchbearer.callbacks.early_stopping import EarlyStopping
from torchbearer.callbacks.gradient_clipping import GradientClipping, GradientNormClipping
from torchbearer.callbacks.label_smoothing import LabelSmoothingRegularisation
from torchbearer.callbacks.live_loss_plot import LiveLossPlot
from torchbearer.callbacks.lr_finder import LRFinder, find_lr
from torchbearer.callbacks.lsuv import LSUV
from torchbearer.callbacks.manifold_mixup import ManifoldMixup
from torchbearer.callbacks.mixup import Mixup, MixupAcc
from torchbearer.callbacks.mlflow_logger import MLflowLogger
from torchbearer.callbacks.optuna_pruning import OptunaPruning, optuna_objective
from torchbearer.callbacks.printer import ConsolePrinter, Tqdm
from torchbearer.callbacks.pycm import PyCM
from torchbearer.callbacks.sample_pairing import SamplePairing
from torchbearer.callbacks.tensor_board import TensorBoard, TensorBoardImages, TensorBoardProjector, TensorBoardText
from torchbearer.callbacks.terminate_on_nan import TerminateOnNaN
from torchbearer.callbacks.torch_scheduler import (
    ChainedScheduler,
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
    TorchScheduler,
)
from torchbearer.callbacks.unpack_state import UnpackState
from torchbearer.callbacks.wandb_logger import WandbLogger
from torchbearer.callbacks.weight_decay import L1WeightDecay, L2WeightDecay, WeightDecay
