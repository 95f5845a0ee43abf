"""MLflow pyfunc model, logged as code: generate replies with a saved SimPO policy.

This file is copied into every logged model, so it imports only mlflow, torch and
transformers (and peft for adapter-only models): serving needs no simpo-pipeline install.
Input: a list of prompts (or a DataFrame with a `prompt` column); output: a list of replies.
"""

import mlflow
from mlflow.pyfunc import PythonModel


class SimPOPolicy(PythonModel):
    def load_context(self, context):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = context.artifacts["model_dir"]
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        try:
            import os

            from peft import AutoPeftModelForCausalLM

            adapter = os.path.exists(os.path.join(model_dir, "adapter_config.json"))
        except ImportError:
            adapter = False
        loader = AutoPeftModelForCausalLM if adapter else AutoModelForCausalLM
        self.model = loader.from_pretrained(model_dir, use_safetensors=True)
        self.model.eval()
        self.torch = torch

    def predict(self, context, model_input, params=None):
        prompts = list(model_input["prompt"]) if hasattr(model_input, "columns") else list(model_input)
        params = params or {}
        texts = [self._render(str(prompt)) for prompt in prompts]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with self.torch.no_grad():
            output = self.model.generate(
                **batch,
                max_new_tokens=int(params.get("max_new_tokens", 64)),
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def _render(self, prompt):
        if self.tokenizer.chat_template:
            messages = [{"role": "user", "content": prompt}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return prompt


mlflow.models.set_model(SimPOPolicy())
