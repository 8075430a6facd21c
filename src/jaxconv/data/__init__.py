"""Datasets, splits, batching and augmentation (numpy only; knows nothing of models)."""

from jaxconv.data.batching import augment as augment
from jaxconv.data.batching import batch_indices as batch_indices
from jaxconv.data.batching import epoch_order as epoch_order
from jaxconv.data.batching import steps_per_epoch as steps_per_epoch
from jaxconv.data.datasets import DATASETS as DATASETS
from jaxconv.data.datasets import Dataset as Dataset
from jaxconv.data.datasets import load_dataset as load_dataset
from jaxconv.data.files import DataError as DataError
