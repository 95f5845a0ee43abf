"""The served model reads every input shape MLflow hands it: prompt strings and prompt/messages rows."""

import numpy as np
import pandas as pd
import pytest

from tasks.helpers.serving_model import _messages, _rows

TURNS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
FRUIT = [{"role": "user", "content": "List some fruit words."}]


def conversations(model_input):
    return [_messages(row) for row in _rows(model_input)]


@pytest.mark.parametrize(
    "model_input",
    [
        ["List some fruit words."],  # predict(["..."])
        np.array(["List some fruit words."]),  # {"inputs": ["..."]} as `mlflow models serve` parses it
        np.array("List some fruit words."),  # {"inputs": "..."}
        "List some fruit words.",
        pd.DataFrame(["List some fruit words."]),  # one unnamed column
        pd.Series(["List some fruit words."]),
        [{"prompt": "List some fruit words."}],
        [{"prompt": np.array("List some fruit words.")}],  # {"inputs": [{"prompt": ...}]}
        pd.DataFrame({"prompt": ["List some fruit words."]}),  # dataframe_records / dataframe_split
        {"prompt": "List some fruit words."},
        {"prompt": np.array(["List some fruit words."])},  # {"instances": [{"prompt": ...}]}
        [{"messages": np.array(FRUIT, dtype=object)}],
    ],
)
def test_every_form_of_one_prompt_is_one_user_turn(model_input):
    assert conversations(model_input) == [FRUIT]


def test_a_batch_may_mix_strings_prompts_and_chat_turns():
    assert conversations(["List some fruit words.", {"messages": TURNS}]) == [FRUIT, TURNS]
    records = pd.DataFrame([{"prompt": "List some fruit words."}, {"messages": TURNS}])  # NaN where absent
    assert conversations(records) == [FRUIT, TURNS]
    assert conversations({"prompt": ["a", "b"]}) == [[{"role": "user", "content": c}] for c in "ab"]
    assert conversations({"messages": [TURNS, FRUIT]}) == [TURNS, FRUIT]


@pytest.mark.parametrize(
    "model_input, message",
    [
        ([{"text": "hi"}], "neither a 'prompt' string nor 'messages'"),
        ([7], "neither a 'prompt' string nor 'messages'"),
        ([{"messages": [{"content": "no role"}]}], "'messages' must be a list of {role, content} turns"),
        ({"prompt": ["a", "b"], "messages": [TURNS]}, "input columns of different lengths"),
    ],
)
def test_an_unreadable_row_says_which_forms_are_accepted(model_input, message):
    with pytest.raises(ValueError, match="send prompt strings") as raised:
        conversations(model_input)
    assert message in str(raised.value)


def test_a_pyfunc_with_the_serving_signature_receives_plain_strings(tmp_path):
    """The logged signature lets a list of strings reach the model (a schema with `prompt` /
    `messages` columns hands it an empty frame) and still checks the generation params."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.registry import serving_signature

    class Turns(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [str(turns) for turns in conversations(model_input)]

    mlflow.pyfunc.save_model(tmp_path / "model", python_model=Turns(), signature=serving_signature())
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    assert model.predict(["List some fruit words."]) == [str(FRUIT)]
    assert model.predict([{"messages": TURNS}], params={"max_new_tokens": 3}) == [str(TURNS)]
    with pytest.raises(MlflowException, match="max_new_tokens"):
        model.predict(["List some fruit words."], params={"max_new_tokens": 2.5})
