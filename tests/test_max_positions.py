"""One rule for how many tokens a window may hold, for every family kdtool loads."""

import pytest
from transformers import BertConfig, CamembertConfig, RobertaConfig, XLMRobertaConfig

from kdtool.models import max_positions


@pytest.mark.parametrize("cls", [RobertaConfig, XLMRobertaConfig, CamembertConfig])
def test_roberta_families_lose_the_positions_before_padding_idx(cls):
    assert max_positions(cls(max_position_embeddings=514, pad_token_id=1)) == 512


def test_bert_uses_every_position_and_a_config_without_a_limit_has_none():
    assert max_positions(BertConfig(max_position_embeddings=512, pad_token_id=0)) == 512
    assert max_positions(object()) is None
