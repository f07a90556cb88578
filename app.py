"""UEO Studio — `streamlit run app.py`. The entry point names the pages (Streamlit's st.navigation); each page is a
thin script in pages/ (layout and widgets only), the home page is home.py."""
import streamlit as st

PAGES = [("home.py", "Home", "home"), ("pages/1_Data.py", "Data", "folder_open"),
         ("pages/2_Model.py", "Model", "memory"), ("pages/3_Adapt.py", "Adapt", "play_circle"),
         ("pages/8_Lesson.py", "Lesson", "school"),
         ("pages/4_Explore.py", "Explore", "scatter_plot"), ("pages/5_Inspect.py", "Inspect", "search"),
         ("pages/9_Sort.py", "Sort", "folder_copy"),
         ("pages/6_Compare.py", "Compare", "compare_arrows"), ("pages/7_Learn.py", "Learn", "functions")]

st.navigation([st.Page(path, title=title, icon=f":material/{icon}:", default=(path == "home.py"),
                       url_path=None if path == "home.py" else title.lower())
               for path, title, icon in PAGES]).run()
