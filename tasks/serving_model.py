"""MLflow pyfunc model, logged as code: generate replies with a saved SimPO policy.

This file is copied into every logged model, so it imports only mlflow, torch and
transformers (peft for adapter-only models) and `prompt_format` (a stdlib-only copy of the
training code's prompt rendering, logged beside it): serving needs no simpo-pipeline install.

Input (the logged signature): rows with `prompt` (one user turn) or `messages` (chat turns
`{"role", "content"}`, system and multi-turn allowed). Output: one reply per row. Params:
`max_new_tokens`, `temperature`, `top_p`, `do_sample` (defaults: `SERVING_DEFAULTS`).
Runs on the GPU when there is one.
"""

import json
import os

import mlflow
from mlflow.pyfunc import PythonModel

try:  # the copy logged with the model (code_paths); in the source tree, the library's module
    from prompt_format import SERVING_DEFAULTS, keep_last_tokens, render_prompt_ids
except ImportError:
    from simpo_core.train.prompt_format import SERVING_DEFAULTS, keep_last_tokens, render_prompt_ids

MAX_PROMPT_TOKENS = 2048  # longer prompts keep their end, as training truncates them


class SimPOPolicy(PythonModel):
    def load_context(self, context):
        import torch
        from transformers import AutoTokenizer

        model_dir = context.artifacts["model_dir"]
        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = _load_policy(model_dir, context.artifacts.get("base_model"), self.device).eval()

    def predict(self, context, model_input, params=None):
        params = {**SERVING_DEFAULTS, **(params or {})}
        conversations = [_messages(row) for row in _rows(model_input)]
        prompt_ids = [
            keep_last_tokens(
                render_prompt_ids(self.tokenizer, messages), MAX_PROMPT_TOKENS, self.tokenizer.bos_token_id
            )
            for messages in conversations
        ]
        if not prompt_ids:
            # MLflow drops input columns the signature does not name (a bare list of strings
            # arrives empty): say so instead of answering nothing.
            raise ValueError(
                "no prompt in the input: send rows with 'prompt' (a string) or 'messages' (chat turns), "
                'e.g. [{"prompt": "List some fruit words."}]'
            )
        batch = self._left_pad(prompt_ids)
        sampling = {"temperature": float(params["temperature"]), "top_p": float(params["top_p"]), "top_k": 0}
        with self.torch.no_grad():
            output = self.model.generate(
                **batch,
                max_new_tokens=int(params["max_new_tokens"]),
                do_sample=bool(params["do_sample"]),
                pad_token_id=self.tokenizer.pad_token_id,
                **(sampling if params["do_sample"] else {}),
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def _left_pad(self, prompt_ids):
        """Prompts padded on the left so every answer starts right after its prompt."""
        width, pad = max(len(ids) for ids in prompt_ids), self.tokenizer.pad_token_id
        input_ids = [[pad] * (width - len(ids)) + ids for ids in prompt_ids]
        mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids]
        tensor = self.torch.tensor
        return {"input_ids": tensor(input_ids).to(self.device), "attention_mask": tensor(mask).to(self.device)}


def _load_policy(model_dir, base_dir, device):
    """The saved model, or for an adapter-only folder its base model with the adapter merged in.
    float32 on the CPU (fastest there), the checkpoint's dtype on the GPU."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = "auto" if device.type == "cuda" else torch.float32
    if os.path.exists(os.path.join(model_dir, "config.json")):
        return AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, dtype=dtype).to(device)
    from peft import PeftModel

    if base_dir is None:
        with open(os.path.join(model_dir, "adapter_config.json")) as handle:
            base_dir = json.load(handle)["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(base_dir, use_safetensors=True, dtype=dtype)
    return PeftModel.from_pretrained(base, model_dir).merge_and_unload().to(device)


def _rows(model_input):
    if hasattr(model_input, "to_dict"):
        return model_input.to_dict("records")
    if isinstance(model_input, dict):
        return [model_input]
    return [row if isinstance(row, dict) else {"prompt": row} for row in model_input]


def _messages(row):
    """The chat turns of one input row: `messages` when given, else `prompt` as one user turn."""
    messages = row.get("messages")
    if messages is not None and len(messages):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    prompt = row.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError("each input row needs 'prompt' (a string) or 'messages' (a list of {role, content})")
    return [{"role": "user", "content": prompt}]


mlflow.models.set_model(SimPOPolicy())
