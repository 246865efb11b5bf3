"""Click commands that live beside the stage they drive; ``inforates.cli`` registers them."""
