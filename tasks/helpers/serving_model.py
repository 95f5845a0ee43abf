"""MLflow pyfunc model, logged as code: generate replies with a saved SimPO policy.

This file is copied into every logged model, so it imports only mlflow, torch and
transformers (peft for adapter-only models) and `prompt_format` (a stdlib-only copy of the
training code's prompt rendering, logged beside it): serving needs no simpo-pipeline install.

Input: prompt strings (`{"inputs": ["..."]}`, `predict(["..."])`, the form most MLflow text
models take), or rows with `prompt` (one user turn) or `messages` (chat turns
`{"role", "content"}`, system and multi-turn allowed), in one request mixed as needed. The
logged signature declares no input schema, so MLflow hands the input over as sent and
`_rows` reads every shape it takes. Output: one reply per prompt. Params (in the signature):
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
ACCEPTED = (
    'send prompt strings, e.g. {"inputs": ["List some fruit words."]}, or rows with \'prompt\' (a string) '
    'or \'messages\' (chat turns), e.g. {"dataframe_records": [{"prompt": "List some fruit words."}]}'
)


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
        if not prompt_ids:  # say so instead of answering nothing
            raise ValueError(f"no prompt in the input: {ACCEPTED}")
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

    from simpo_core.building import one_build_at_a_time

    dtype = "auto" if device.type == "cuda" else torch.float32
    with one_build_at_a_time():
        if os.path.exists(os.path.join(model_dir, "config.json")):
            return AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, dtype=dtype).to(device)
        from peft import PeftModel

        if base_dir is None:
            with open(os.path.join(model_dir, "adapter_config.json")) as handle:
                base_dir = json.load(handle)["base_model_name_or_path"]
        base = AutoModelForCausalLM.from_pretrained(base_dir, use_safetensors=True, dtype=dtype)
        return PeftModel.from_pretrained(base, model_dir).merge_and_unload().to(device)


def _rows(model_input):
    """One dict per prompt, from each shape MLflow passes on: a DataFrame (`dataframe_records`,
    `dataframe_split`: `prompt` / `messages` columns, or one column of prompt strings), a list,
    array or Series of prompt strings or row dicts (`inputs`, `predict([...])`), a dict of one
    row or of columns (`instances`), or one string."""
    if hasattr(model_input, "columns"):  # a DataFrame
        named = [column for column in model_input.columns if column in ("prompt", "messages")]
        if not named and len(model_input.columns) == 1:  # e.g. `pd.DataFrame(["..."])`: column 0
            return [{"prompt": value} for value in model_input.iloc[:, 0]]
        return model_input.to_dict("records")
    model_input = _plain(model_input)
    if isinstance(model_input, dict):
        return _column_rows(model_input) if _is_columns(model_input) else [model_input]
    if isinstance(model_input, str):
        return [{"prompt": model_input}]
    rows = [_plain(row) for row in model_input]
    return [row if isinstance(row, dict) else {"prompt": row} for row in rows]


def _is_columns(record):
    """`{"prompt": [p1, p2]}` or `{"messages": [turns1, turns2]}`: one value per row."""
    prompt, messages = _plain(record.get("prompt")), _plain(record.get("messages"))
    if isinstance(prompt, list):
        return True
    return isinstance(messages, list) and bool(messages) and isinstance(_plain(messages[0]), list)


def _column_rows(record):
    columns = {key: _plain(record[key]) for key in ("prompt", "messages") if key in record}
    lengths = {key: len(values) if isinstance(values, list) else 1 for key, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"input columns of different lengths {lengths}: {ACCEPTED}")
    count = next(iter(lengths.values()))
    return [{key: values[i] for key, values in columns.items()} for i in range(count)]


def _plain(value):
    """Python values for numpy arrays and pandas Series (a 0-d array becomes its item)."""
    return value.tolist() if hasattr(value, "tolist") else value


def _messages(row):
    """The chat turns of one input row: `messages` when given, else `prompt` as one user turn.
    A missing value of a mixed batch (NaN in its DataFrame) counts as absent."""
    messages = _plain(row.get("messages"))
    if isinstance(messages, list) and messages:
        turns = [_plain(turn) for turn in messages]
        if not all(isinstance(turn, dict) and {"role", "content"} <= set(turn) for turn in turns):
            raise ValueError(f"'messages' must be a list of {{role, content}} turns: {ACCEPTED}")
        return [{"role": str(turn["role"]), "content": str(turn["content"])} for turn in turns]
    prompt = _plain(row.get("prompt"))
    if not isinstance(prompt, str):
        raise ValueError(f"an input row has neither a 'prompt' string nor 'messages': {ACCEPTED}")
    return [{"role": "user", "content": prompt}]


mlflow.models.set_model(SimPOPolicy())
