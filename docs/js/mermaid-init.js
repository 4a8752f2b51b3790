// Draw the ```mermaid blocks (rendered as <div class="mermaid"> by pymdownx.superfences).
mermaid.initialize({ startOnLoad: true, theme: "neutral" });
