"""`vaectl explore`: the latent space in a browser, the exported graphs running in the page (onnxruntime-web).

from vaectl.explore import load_explore_model, make_server, write_site
model = load_explore_model("export/")            # or decoder=..., encoder=..., data_dir=...
server = make_server(model, "127.0.0.1", 0)      # fixed routes; serve_forever() to serve
write_site(model, "site/")                       # the same page as a static folder
"""

from .model import ExploreModel, load_explore_model
from .server import make_server, server_url
from .site import write_site

__all__ = ["ExploreModel", "load_explore_model", "make_server", "server_url", "write_site"]
