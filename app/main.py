"""kdlab dashboard: ``streamlit run app/main.py`` (binds to 127.0.0.1, see .streamlit/config.toml).

kdlab is an installed package (``pip install -e .[dashboard]``); the pages import their helper module
``common`` from this folder, which Streamlit puts on ``sys.path`` for the main script.
"""
import streamlit as st

from kdlab.threads import dashboard as dashboard_threads

dashboard_threads()   # one CPU thread here: the runs it starts take the cores (kdlab.threads)

# an emoji favicon is drawn in the page (a data: URL); a ":material/...:" page icon would be fetched from
# fonts.gstatic.com, and the dashboard makes no request beyond 127.0.0.1 (tests/test_browser.py)
st.set_page_config(page_title="kdlab", page_icon="🎓", layout="wide")

PAGES = [
    st.Page("pages/1_Setup.py", title="Setup", icon=":material/settings:", default=True),
    st.Page("pages/2_Layer_mapping.py", url_path="layer-mapping", title="Layer mapping", icon=":material/grid_on:"),
    st.Page("pages/3_Temperature_lab.py", url_path="temperature", title="Temperature lab", icon=":material/thermostat:"),
    st.Page("pages/4_Train.py", url_path="train", title="Train", icon=":material/play_arrow:"),
    st.Page("pages/5_Compare_runs.py", url_path="compare", title="Compare runs", icon=":material/compare:"),
    st.Page("pages/6_Out_of_domain.py", url_path="out-of-domain", title="Out of domain", icon=":material/travel_explore:"),
    st.Page("pages/7_Inspect.py", url_path="inspect", title="Inspect", icon=":material/search:"),
    st.Page("pages/8_Deploy.py", url_path="deploy", title="Deploy", icon=":material/rocket_launch:"),
    st.Page("pages/9_Ranking.py", url_path="ranking", title="Ranking", icon=":material/format_list_numbered:"),
    st.Page("pages/10_Studies.py", url_path="studies", title="Studies", icon=":material/science:"),
    st.Page("pages/11_Doctor.py", url_path="doctor", title="Doctor", icon=":material/stethoscope:"),
]
st.navigation(PAGES).run()
