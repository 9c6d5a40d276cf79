"""Values the event contracts share across services (written once: the inbound schemas, the handlers that enforce
them and docs/asyncapi.yaml all read them from here; tests hold each service's own enums to these)."""

from __future__ import annotations

# A unified social credit code (GB 32100-2015): 18 characters of 0-9 and A-Y without I, O, S, V, Z, positions 3-8
# digits. The 18th is a check character that consumers also verify (a pattern cannot).
USCC_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"

# Shanghai's 16 districts plus the Lingang New Area (its own value), as codes, with their Chinese names.
DISTRICT_NAMES_ZH: dict[str, str] = {
    "黄浦区": "huangpu", "徐汇区": "xuhui", "长宁区": "changning", "静安区": "jingan", "普陀区": "putuo",
    "虹口区": "hongkou", "杨浦区": "yangpu", "闵行区": "minhang", "宝山区": "baoshan", "嘉定区": "jiading",
    "浦东新区": "pudong", "金山区": "jinshan", "松江区": "songjiang", "青浦区": "qingpu", "奉贤区": "fengxian",
    "崇明区": "chongming", "临港新片区": "lingang",
}
DISTRICTS: tuple[str, ...] = tuple(DISTRICT_NAMES_ZH.values())

# The controlled industry vocabulary (the priority industries the policy seeds name), as codes, with Chinese names.
INDUSTRY_NAMES_ZH: dict[str, str] = {
    "集成电路": "integrated_circuits", "人工智能": "artificial_intelligence", "生物医药": "biomedicine",
    "航空航天": "aerospace", "高端装备": "high_end_equipment", "智能制造": "intelligent_manufacturing",
    "新能源汽车": "new_energy_vehicles", "新材料": "new_materials", "新能源": "new_energy",
    "航运物流": "shipping_logistics", "海洋经济": "marine", "数字经济": "digital_economy", "金融": "finance",
    "现代服务业": "modern_services", "绿色低碳": "green_low_carbon", "民用航空": "civil_aviation",
}
INDUSTRIES: tuple[str, ...] = tuple(INDUSTRY_NAMES_ZH.values())
