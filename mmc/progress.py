"""Progress bars for the analysis: a bar appears only once its loop has run for a second, so the dozens of
quick searches of one run stay quiet and the long ones still show their progress."""
from functools import partial

from tqdm.auto import tqdm

bar = partial(tqdm, leave=False, delay=1.0)
