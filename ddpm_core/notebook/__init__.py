"""The book's notebook helpers: style, figures, sliders, and glue for the prose (every chapter).

The top layer: it draws what the layers below compute, and nothing below imports it.
"""

from .style import BOOK_RC, OKABE_ITO, apply_book_style
from .figures import digit_rows, fig_to_png, figure_frames, images_figure, show_images, trajectory_frames
from .sliders import figure_slider, frame_slider, slider_timesteps, trajectory_slider
from .glue import device_note, glue, in_colab, sci_notation
from .chains import ddim_vs_ddpm_diagram, markov_chain_diagram
from .unet_diagram import unet_diagram
