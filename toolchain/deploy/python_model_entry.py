"""Triton Python-backend entry point of a ``kdtool triton`` repository (copied verbatim as ``model.py``).

The model's ``parameters`` name its role (``kdtool_role``: qa, tokenizer, encoder, decoder); the work is
done by :mod:`kdtool.deploy.triton_models`. kdtool must be importable in the backend's Python: the
repository's ``EXECUTION_ENV_PATH`` parameter (``kdtool triton --execution-env``) or kdtool installed in
the server's own Python. An error in ``initialize`` (a bundle that fails verification) leaves the
model not ready; Triton logs the one-line reason.
"""

import json


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        try:
            from kdtool.deploy.triton_models import ROLES, model_parameters
        except ImportError as err:
            raise RuntimeError(f"kdtool is not importable in this Triton Python backend ({err}); set the model's "
                               "EXECUTION_ENV_PATH (kdtool triton --execution-env) or install kdtool in the "
                               "server's Python") from None
        params = model_parameters(config)
        self.model = ROLES[params["kdtool_role"]](args, params)

    def execute(self, requests):
        return self.model.execute(requests)

    def finalize(self):
        self.model.finalize()
